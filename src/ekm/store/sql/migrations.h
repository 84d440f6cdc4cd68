// Numbered schema migrations. Append only: a released migration is never edited, so every
// database reaches the same schema by the same steps. Portable SQL (the PostgreSQL store runs
// the same schema semantics).
#pragma once

#include <string_view>
#include <vector>

namespace ekm {

// The migration that binds the store to its root key (store/store_integrity.h): from it on,
// every open checks the root key's fingerprint before anything else.
inline constexpr int kStoreIntegrityMigration = 12;

struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;
  // When set, what PostgreSQL runs instead of `sql`, written for PostgreSQL (the translation of
  // postgres/postgres_sql.h leaves it as it is): for what only PostgreSQL does otherwise. Rare:
  // the schema means the same on both.
  std::string_view postgres_sql = {};
};

inline const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kMigrations = {
      {1, "key hierarchy: workspaces, environments, environment keys, data keys", R"sql(
CREATE TABLE workspaces (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE environments (
  id INTEGER PRIMARY KEY,
  workspace_id INTEGER NOT NULL REFERENCES workspaces(id),
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  current_ek_version INTEGER NOT NULL,
  UNIQUE (workspace_id, name)
);
CREATE TABLE environment_keys (
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  version INTEGER NOT NULL,
  cmk_provider TEXT NOT NULL,
  cmk_key_id TEXT NOT NULL,
  wrapped BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (environment_id, version)
);
CREATE TABLE data_keys (
  environment_id INTEGER NOT NULL,
  scope TEXT NOT NULL,
  version INTEGER NOT NULL,
  ek_version INTEGER NOT NULL,
  wrapped BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  messages_reserved INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (environment_id, scope, version),
  FOREIGN KEY (environment_id, ek_version) REFERENCES environment_keys(environment_id, version)
);
)sql"},
      {2, "customer key validations (\"Update key\")", R"sql(
CREATE TABLE key_validations (
  id INTEGER PRIMARY KEY,
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  cmk_provider TEXT NOT NULL,
  cmk_key_id TEXT NOT NULL,
  checked_at INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  error_code TEXT NOT NULL,
  provider_code TEXT NOT NULL,
  message TEXT NOT NULL,
  hint TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX key_validations_by_environment ON key_validations (environment_id, id);
)sql"},
      {3, "lifecycle events", R"sql(
CREATE TABLE lifecycle_events (
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  workspace TEXT NOT NULL,
  environment TEXT NOT NULL,
  type TEXT NOT NULL,
  actor TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX lifecycle_events_by_environment ON lifecycle_events (workspace, environment, id);
)sql"},
      {4, "environment settings (key cache TTL, grace period, rotation periods…)", R"sql(
CREATE TABLE environment_settings (
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  name TEXT NOT NULL,
  value INTEGER NOT NULL,
  PRIMARY KEY (environment_id, name)
);
)sql"},
      {5, "environment key status (CMK health: healthy, degraded, unavailable)", R"sql(
CREATE TABLE environment_key_status (
  environment_id INTEGER PRIMARY KEY REFERENCES environments(id),
  state TEXT NOT NULL,
  since INTEGER NOT NULL,
  last_success INTEGER NOT NULL,
  error_code TEXT NOT NULL,
  provider_code TEXT NOT NULL,
  message TEXT NOT NULL,
  hint TEXT NOT NULL,
  next_retry INTEGER NOT NULL
);
)sql"},

      {6, "CMK replacement and repack: CMK changes, repack jobs, destroyed EK wrappings", R"sql(
ALTER TABLE environment_keys ADD COLUMN destroyed_at INTEGER;
CREATE TABLE cmk_changes (
  id INTEGER PRIMARY KEY,
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  at INTEGER NOT NULL,
  from_provider TEXT NOT NULL,
  from_key_id TEXT NOT NULL,
  to_provider TEXT NOT NULL,
  to_key_id TEXT NOT NULL,
  ek_version INTEGER NOT NULL,
  kind TEXT NOT NULL,
  emergency INTEGER NOT NULL,
  reason TEXT NOT NULL,
  actor TEXT NOT NULL
);
CREATE INDEX cmk_changes_by_environment ON cmk_changes (environment_id, id);
CREATE TABLE repack_jobs (
  id INTEGER PRIMARY KEY,
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  target_ek_version INTEGER NOT NULL,
  state TEXT NOT NULL,
  total INTEGER NOT NULL,
  done INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  run_started_at_ms INTEGER NOT NULL,
  run_started_done INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER,
  last_error TEXT NOT NULL,
  retry_at_ms INTEGER
);
CREATE INDEX repack_jobs_by_environment ON repack_jobs (environment_id, id);
CREATE INDEX data_keys_by_ek_version ON data_keys (environment_id, ek_version);
)sql"},

      {7, "uploaded key material: import parameters and sealed material", R"sql(
CREATE TABLE import_params (
  environment_id INTEGER PRIMARY KEY REFERENCES environments(id),
  token_sha256 BLOB NOT NULL UNIQUE,
  public_key_pem TEXT NOT NULL,
  sealed_private_key BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE key_material (
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  key_id TEXT NOT NULL,
  sealed_material BLOB NOT NULL,
  imported_at INTEGER NOT NULL,
  deleted_at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (environment_id, key_id)
);
CREATE INDEX key_material_by_key_id ON key_material (key_id);
)sql"},

      {8, "crypto-shredding and the workspace default CMK", R"sql(
CREATE TABLE environment_shreds (
  environment_id INTEGER PRIMARY KEY REFERENCES environments(id),
  shredded_at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  ek_versions INTEGER NOT NULL,
  dk_versions INTEGER NOT NULL
);
CREATE TABLE workspace_default_keys (
  workspace_id INTEGER PRIMARY KEY REFERENCES workspaces(id),
  cmk_provider TEXT NOT NULL,
  cmk_key_id TEXT NOT NULL,
  set_at INTEGER NOT NULL,
  actor TEXT NOT NULL
);
)sql"},

      {9, "API tokens", R"sql(
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 BLOB NOT NULL,
  role TEXT NOT NULL,
  workspace TEXT NOT NULL,
  environments TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  expires_at INTEGER NOT NULL DEFAULT 0,
  revoked_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_tokens_by_workspace ON api_tokens (workspace);
)sql"},

      // The lifecycle events become the audit log: moved, in order, into audit_records with a
      // per-workspace chain; the store computes the hashes of the moved rows in the same
      // transaction (SqlStore::ChainMovedAuditRecords), since SQL has no SHA-256.
      {10, "tamper-evident audit log: hash-chained audit records and signed checkpoints", R"sql(
CREATE TABLE audit_records (
  id INTEGER PRIMARY KEY,
  chain TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  workspace TEXT NOT NULL,
  environment TEXT NOT NULL,
  type TEXT NOT NULL,
  actor TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL,
  UNIQUE (chain, seq)
);
INSERT INTO audit_records (id, chain, seq, at_ms, workspace, environment, type, actor, detail,
                           prev_hash, hash)
  SELECT id, workspace, ROW_NUMBER() OVER (PARTITION BY workspace ORDER BY id), at_ms, workspace,
         environment, type, actor, detail, X'', X''
  FROM lifecycle_events ORDER BY id;
DROP TABLE lifecycle_events;
CREATE INDEX audit_records_by_environment ON audit_records (workspace, environment, id);
CREATE TABLE audit_checkpoints (
  id INTEGER PRIMARY KEY,
  chain TEXT NOT NULL,
  seq INTEGER NOT NULL,
  head_hash BLOB NOT NULL,
  at_ms INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  signature BLOB NOT NULL
);
CREATE INDEX audit_checkpoints_by_chain ON audit_checkpoints (chain, id);
)sql"},

      {11, "import tokens: unwrap attempts (a token locks after a few failures)", R"sql(
ALTER TABLE import_params ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
)sql"},
      // The store computes the MACs of the rows already there in the same transaction
      // (SqlStore::BindToRootKey), since SQL has no HMAC; the root key's fingerprint is
      // recorded there too.
      {kStoreIntegrityMigration,
       "store integrity: the root key's fingerprint, MACs of EK rows, current-EK pointers and "
       "workspace default CMKs",
       R"sql(
CREATE TABLE store_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
ALTER TABLE environments ADD COLUMN current_ek_mac BLOB NOT NULL DEFAULT X'';
ALTER TABLE environment_keys ADD COLUMN mac BLOB NOT NULL DEFAULT X'';
ALTER TABLE workspace_default_keys ADD COLUMN mac BLOB NOT NULL DEFAULT X'';
)sql"},

      {13,
       "shred confirmations in the store (by the token's SHA-256): any process on it takes "
       "step two",
       R"sql(
CREATE TABLE shred_confirmations (
  token_hash BLOB PRIMARY KEY,
  environment_id INTEGER NOT NULL REFERENCES environments(id),
  expires_at INTEGER NOT NULL
);
)sql"},

      {14,
       "several processes on one store: cluster notices (a shred, a key change or a token "
       "revocation every other process acts on at once) and leases of background jobs",
       R"sql(
CREATE TABLE cluster_notices (
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  workspace TEXT NOT NULL,
  environment TEXT NOT NULL,
  token_id TEXT NOT NULL
);
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at_ms INTEGER NOT NULL
);
)sql"},

      // PostgreSQL checks a foreign key row by row, each check its own query: a repack batch
      // re-points 1000 DKs at the new EK, and those 1000 checks were a quarter of its time in
      // the database. Instead: new DKs are checked once per statement against the statement's
      // rows (its transition table), EKs that DKs name cannot be removed, and the one statement
      // that changes a DK's EK (the repack's) sets the EK its own transaction has just read as
      // the current one (SqlStore::CommitRepackBatch). A trigger on that update would fire on
      // every nonce reservation too (PostgreSQL takes no column list with transition tables).
      // A DK re-pointed by hand at another EK would not unwrap anyway: the EK version is in the
      // DK's associated data. SQLite keeps its foreign key: its checks are in-process lookups.
      {15, "PostgreSQL: a data key's environment key checked once per statement, not per row", "",
       R"sql(
DO $$
DECLARE fk text;
BEGIN
  SELECT conname INTO fk FROM pg_constraint
   WHERE conrelid = 'data_keys'::regclass AND confrelid = 'environment_keys'::regclass
     AND contype = 'f';
  IF fk IS NOT NULL THEN
    EXECUTE format('ALTER TABLE data_keys DROP CONSTRAINT %I', fk);
  END IF;
END $$;
CREATE FUNCTION ekm_data_keys_name_their_environment_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM written_data_keys d WHERE NOT EXISTS (
       SELECT 1 FROM environment_keys k
        WHERE k.environment_id = d.environment_id AND k.version = d.ek_version)) THEN
    RAISE EXCEPTION 'a data key names an environment key that does not exist'
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER data_keys_inserted_name_their_environment_key AFTER INSERT ON data_keys
  REFERENCING NEW TABLE AS written_data_keys FOR EACH STATEMENT
  EXECUTE FUNCTION ekm_data_keys_name_their_environment_key();
CREATE FUNCTION ekm_environment_keys_named_by_data_keys_stay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM removed_environment_keys o JOIN data_keys d
               ON d.environment_id = o.environment_id AND d.ek_version = o.version
              WHERE NOT EXISTS (SELECT 1 FROM environment_keys k
                                 WHERE k.environment_id = o.environment_id
                                   AND k.version = o.version)) THEN
    RAISE EXCEPTION 'an environment key that data keys name cannot be removed'
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER environment_keys_deleted_named_by_data_keys_stay AFTER DELETE ON environment_keys
  REFERENCING OLD TABLE AS removed_environment_keys FOR EACH STATEMENT
  EXECUTE FUNCTION ekm_environment_keys_named_by_data_keys_stay();
CREATE TRIGGER environment_keys_updated_named_by_data_keys_stay AFTER UPDATE ON environment_keys
  REFERENCING OLD TABLE AS removed_environment_keys FOR EACH STATEMENT
  EXECUTE FUNCTION ekm_environment_keys_named_by_data_keys_stay();
)sql"},

  };
  return kMigrations;
}

}  // namespace ekm
