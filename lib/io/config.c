#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static const char *json_kind(const cJSON *j)
{
	if (!j)
		return "nothing";
	if (cJSON_IsNull(j))
		return "null";
	if (cJSON_IsBool(j))
		return "a boolean";
	if (cJSON_IsNumber(j))
		return "a number";
	if (cJSON_IsString(j))
		return "a string";
	if (cJSON_IsArray(j))
		return "a list";
	return "an object";
}

clunet_status cfg_load(const char *path, cfg *out)
{
	char *text;
	size_t size;
	clunet_status st;
	memset(out, 0, sizeof(*out));
	st = cu_read_file(path, &text, &size);
	if (st)
		return st;
	st = cfg_parse(text, size, path, out);
	free(text);
	return st;
}

clunet_status cfg_parse(const char *text, size_t size, const char *path, cfg *out)
{
	memset(out, 0, sizeof(*out));
	out->root = cJSON_ParseWithLength(text, size);
	if (!out->root) {
		const char *where = cJSON_GetErrorPtr();
		long at = where && where >= text && where <= text + size ? (long)(where - text) : -1;
		return cu_fail(CLUNET_ERR_FORMAT, "%s: invalid JSON (near byte %ld)", path, at);
	}
	if (!cJSON_IsObject(out->root)) {
		cJSON_Delete(out->root);
		out->root = NULL;
		return cu_fail(CLUNET_ERR_FORMAT, "%s: expected a JSON object at the top level", path);
	}
	out->path = cu_strdup(path);
	if (!out->path) {
		cJSON_Delete(out->root);
		out->root = NULL;
		return CLUNET_ERR_HOST_MEMORY;
	}
	return CLUNET_OK;
}

void cfg_free(cfg *c)
{
	cJSON_Delete(c->root);
	free(c->path);
	c->root = NULL;
	c->path = NULL;
}

clunet_status cfg_error(const cfg *c, const char *key, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cu_fail(CLUNET_ERR_CONFIG, "%s: key '%s': %s", c->path, key, msg);
}

const cJSON *cfg_get(const cfg *c, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(c->root, key);
}

int cfg_is_null(const cfg *c, const char *key)
{
	const cJSON *j = cfg_get(c, key);
	return !j || cJSON_IsNull(j);
}

static int as_int(const cJSON *j, long *out)
{
	if (!cJSON_IsNumber(j) || floor(j->valuedouble) != j->valuedouble ||
	    fabs(j->valuedouble) > 1e15)
		return 0;
	*out = (long)j->valuedouble;
	return 1;
}

clunet_status cfg_int(const cfg *c, const char *key, long def, long *out)
{
	const cJSON *j = cfg_get(c, key);
	if (!j) {
		*out = def;
		return CLUNET_OK;
	}
	if (!as_int(j, out))
		return cfg_error(c, key, "expected an integer, got %s", json_kind(j));
	return CLUNET_OK;
}

clunet_status cfg_int_or_null(const cfg *c, const char *key, long def, int def_null, long *out,
			      int *is_null)
{
	const cJSON *j = cfg_get(c, key);
	*is_null = 0;
	if (!j) {
		*is_null = def_null;
		*out = def;
		return CLUNET_OK;
	}
	if (cJSON_IsNull(j)) {
		*is_null = 1;
		*out = def;
		return CLUNET_OK;
	}
	if (!as_int(j, out))
		return cfg_error(c, key, "expected an integer or null, got %s", json_kind(j));
	return CLUNET_OK;
}

clunet_status cfg_num(const cfg *c, const char *key, double def, double *out)
{
	const cJSON *j = cfg_get(c, key);
	if (!j) {
		*out = def;
		return CLUNET_OK;
	}
	if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
		return cfg_error(c, key, "expected a finite number, got %s", json_kind(j));
	*out = j->valuedouble;
	return CLUNET_OK;
}

clunet_status cfg_bool(const cfg *c, const char *key, int def, int *out)
{
	const cJSON *j = cfg_get(c, key);
	if (!j) {
		*out = def;
		return CLUNET_OK;
	}
	if (!cJSON_IsBool(j))
		return cfg_error(c, key, "expected true or false, got %s", json_kind(j));
	*out = cJSON_IsTrue(j);
	return CLUNET_OK;
}

clunet_status cfg_str(const cfg *c, const char *key, const char *def, const char **out)
{
	const cJSON *j = cfg_get(c, key);
	if (!j || cJSON_IsNull(j)) {
		*out = def;
		return CLUNET_OK;
	}
	if (!cJSON_IsString(j))
		return cfg_error(c, key, "expected a string, got %s", json_kind(j));
	*out = j->valuestring;
	return CLUNET_OK;
}

clunet_status cfg_enum(const cfg *c, const char *key, const char *const *allowed, int def_index,
		       int *index)
{
	const char *s;
	char list[512] = "";
	clunet_status st = cfg_str(c, key, NULL, &s);
	if (st)
		return st;
	if (!s) {
		*index = def_index;
		return CLUNET_OK;
	}
	for (int i = 0; allowed[i]; i++) {
		if (strcmp(s, allowed[i]) == 0) {
			*index = i;
			return CLUNET_OK;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"", i ? ", " : "",
			 allowed[i]);
	}
	return cfg_error(c, key, "\"%s\" is not one of %s", s, list);
}

clunet_status cfg_str_list(const cfg *c, const char *key, const char **out, int max, int *n)
{
	const cJSON *j = cfg_get(c, key), *e;
	int k = 0;
	if (!j || !cJSON_IsArray(j))
		return cfg_error(c, key, "expected a list of strings, got %s", json_kind(j));
	cJSON_ArrayForEach(e, j) {
		if (!cJSON_IsString(e))
			return cfg_error(c, key, "entry %d: expected a string, got %s", k,
					 json_kind(e));
		if (k >= max)
			return cfg_error(c, key, "more than %d entries", max);
		out[k++] = e->valuestring;
	}
	*n = k;
	return CLUNET_OK;
}

clunet_status cfg_int_list(const cfg *c, const char *key, long *out, int max, int *n,
			   int n_if_scalar)
{
	const cJSON *j = cfg_get(c, key), *e;
	int k = 0;
	long v;
	if (j && n_if_scalar > 0 && as_int(j, &v)) {
		if (n_if_scalar > max)
			return cfg_error(c, key, "more than %d entries", max);
		for (k = 0; k < n_if_scalar; k++)
			out[k] = v;
		*n = k;
		return CLUNET_OK;
	}
	if (!j || !cJSON_IsArray(j))
		return cfg_error(c, key, "expected a list of integers, got %s", json_kind(j));
	cJSON_ArrayForEach(e, j) {
		if (!as_int(e, &v))
			return cfg_error(c, key, "entry %d: expected an integer, got %s", k,
					 json_kind(e));
		if (k >= max)
			return cfg_error(c, key, "more than %d entries", max);
		out[k++] = v;
	}
	*n = k;
	return CLUNET_OK;
}
