/* A registry device as JSON: the object `ledgermq device show` prints and
 * $ledger/registry answers with (docs/FORMATS.md "Device registry
 * JSON"), so the offline and the online views are byte for byte the same.
 * Any thread. */
#ifndef LMQ_IDENTITY_REGISTRY_JSON_H
#define LMQ_IDENTITY_REGISTRY_JSON_H

#include <stdio.h>

#include "identity/registry.h"

/* Writes D as a JSON object to F, each line prefixed with INDENT, without
 * a final newline. */
void registry_device_json(FILE *f, const struct registry_device *d, const char *indent);

#endif
