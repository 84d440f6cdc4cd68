#!/usr/bin/env python3
"""Independent check of testdata/envelope/v1 with Python's `cryptography` (not ekm's code):
rebuilds every good vector's envelope from its description, per docs/format.md."""
import base64, glob, json, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "envelope", "v1")
passed = failed = 0

def header(v, form):
    h = b"EKM" + bytes([1, 1 if form == "single" else 2])
    for f in ("workspace", "environment", "scope"):
        s = v[f].encode()
        h += bytes([len(s)]) + s
    h += v["dk_version"].to_bytes(4, "big")
    if form == "single":
        return h + bytes.fromhex(v["nonce"])
    return h + v["segment_size"].to_bytes(4, "big") + bytes.fromhex(v["salt"])

for path in sorted(glob.glob(os.path.join(root, "*.json"))):
    v = json.load(open(path))
    if "error" in v or "form" not in v:
        continue
    key = bytes(range(v["key_start"], v["key_start"] + 32))
    pt = bytes.fromhex(v["plaintext"])
    h = header(v, v["form"])
    if v["form"] == "single":
        env = h + AESGCM(key).encrypt(bytes.fromhex(v["nonce"]), pt, h)
    else:
        sk = HKDF(hashes.SHA256(), 32, bytes.fromhex(v["salt"]), b"ekm stream v1" + h).derive(key)
        seg = v["segment_size"]
        chunks = [pt[i:i + seg] for i in range(0, len(pt), seg)] or [b""]
        if len(pt) and len(pt) % seg == 0:
            pass  # the last full segment is the final one
        env = h
        for i, c in enumerate(chunks):
            last = 1 if i == len(chunks) - 1 else 0
            nonce = bytes(7) + i.to_bytes(4, "big") + bytes([last])
            env += AESGCM(sk).encrypt(nonce, c, h + i.to_bytes(4, "big") + bytes([last]))
    if v["encoding"] == "text":
        got = "ekm1:" + base64.urlsafe_b64encode(env).decode().rstrip("=")
        want = v["envelope_text"].strip()
    else:
        got, want = env.hex(), v["envelope"]
    if got == want:
        passed += 1
    else:
        failed += 1
        print("MISMATCH", os.path.basename(path))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
