// JSON forms of the uploaded-key-material results, shared by ekmd's routes and the
// client so the CLI prints the same in local and server mode. The import token is a secret of
// the admin's: it is in the import-params response (the admin asked for it) and nowhere else.
#pragma once

#include <nlohmann/json.hpp>

#include "ekm/api/types.h"

namespace ekm {

// {"workspace","environment","wrapping_key_pem","import_token","expires_at" (RFC 3339),
//  "algorithm":"RSAES_OAEP_SHA_256","material_size":32}
nlohmann::json KeyImportParametersToJson(const KeyImportParameters& p);
KeyImportParameters KeyImportParametersFromJson(const nlohmann::json& j);

// {"workspace","environment","key_id","deleted_at" (RFC 3339),"in_use"}
nlohmann::json KeyMaterialDeletionToJson(const KeyMaterialDeletion& d);
KeyMaterialDeletion KeyMaterialDeletionFromJson(const nlohmann::json& j);

}  // namespace ekm
