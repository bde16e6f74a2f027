/*
 * fuzz_json.c: libFuzzer target for request-body parsing (json.c): every
 * JSON body a partner sends goes through tjson_parse and the typed getters.
 *
 * Whatever the bytes, parsing must either fail with a 400/413 error that
 * names a code, or yield an object on which every getter answers without
 * crashing; an accepted document must serialise and parse again.
 *
 * fuzz-sources: services/common/json.c services/common/util.c services/common/log.c
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *obj;
	tjson_error err;
	if (tjson_parse((const char *)data, size, 64 * 1024, 16, &obj, &err) != 0) {
		if (err.code == NULL || (err.status != 400 && err.status != 413))
			abort(); /* every refusal must be a client error with a code */
		return 0;
	}
	const char *s;
	int64_t i;
	double d;
	bool b;
	json_t *o;
	static const char *const fields[] = {"description", "lat", "long", "service_code",
	    "attributes", "media_url", ""};
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		/* The results do not matter; not crashing and naming the field do. */
		if (tjson_get_string(obj, fields[k], false, 4000, &s, &err) != 0 &&
		    strcmp(err.field, fields[k]) != 0)
			abort();
		if (tjson_get_int(obj, fields[k], true, -1000, 1000, &i, &err) != 0 &&
		    strcmp(err.field, fields[k]) != 0)
			abort();
		(void)tjson_get_double(obj, fields[k], false, -90.0, 90.0, &d, &err);
		(void)tjson_get_bool(obj, fields[k], false, &b, &err);
		(void)tjson_get_object(obj, fields[k], false, &o, &err);
	}
	size_t len;
	char *text = tjson_dump(obj, &len);
	json_t *again;
	if (text == NULL || tjson_parse(text, len, 0, 32, &again, &err) != 0)
		abort(); /* we wrote something we refuse to read */
	json_decref(again);
	free(text);
	json_decref(obj);
	return 0;
}
