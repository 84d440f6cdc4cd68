// A keys/ file that includes service/, which is above it (docs/architecture.md "Modules"): it
// must not compile. ctest layers_enforced builds it as target layer_probe, which links ekm_keys
// alone, and passes only when the compiler says service/'s header is not found;
// layers_enforced_control builds it linked to ekm_service too, where it compiles.
#include "ekm/keys/key_hierarchy.h"
#include "ekm/service/ekm_service.h"

static_assert(sizeof(ekm::KeyHierarchy*) > 0 && sizeof(ekm::EkmService*) > 0);
