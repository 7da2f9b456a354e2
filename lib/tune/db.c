/* The per-device tuning database: <cache folder>/tuning.json, written by
 * `clunet tune` and read by every plan (cu_op_variant). One object:
 *   {"format": 1, "device": name, "driver": CL_DRIVER_VERSION,
 *    "platform": platform version, "entries": {op key: variant}}
 * A file written for another driver or platform version is ignored (and
 * replaced by the next tuning run): its timings say nothing about this one. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/runtime.h"

static char *db_path(const rt_ctx *rt)
{
	return rt->cache_dir ? cu_path_join(rt->cache_dir, "tuning.json") : NULL;
}

static cJSON *fresh_db(const rt_ctx *rt)
{
	cJSON *db = cJSON_CreateObject();
	if (!db)
		return NULL;
	cJSON_AddNumberToObject(db, "format", 1);
	cJSON_AddStringToObject(db, "device", rt->info.name);
	cJSON_AddStringToObject(db, "driver", rt->info.driver);
	cJSON_AddStringToObject(db, "platform", rt->info.platform_version);
	if (!cJSON_AddObjectToObject(db, "entries")) {
		cJSON_Delete(db);
		return NULL;
	}
	return db;
}

static int same_str(const cJSON *db, const char *key, const char *want)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(db, key);
	return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

/* Reads the database once per context; never fails: a missing, unreadable or
 * foreign file means an empty database (logged). */
static void db_load(rt_ctx *rt)
{
	char *path, *text = NULL;
	size_t size = 0;
	cJSON *db = NULL;
	if (rt->tune_loaded)
		return;
	rt->tune_loaded = 1;
	path = db_path(rt);
	if (path && access(path, F_OK) == 0) {
		if (cu_read_file(path, &text, &size) == CLUNET_OK)
			db = cJSON_ParseWithLength(text, size);
		cu_clear_error();
		if (!db || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(db, "entries"))) {
			cu_logf(&rt->log, CLUNET_LOG_WARNING, "%s: not a tuning database; ignored",
				path);
			cJSON_Delete(db);
			db = NULL;
		} else if (!same_str(db, "driver", rt->info.driver) ||
			   !same_str(db, "platform", rt->info.platform_version) ||
			   !same_str(db, "device", rt->info.name)) {
			cu_logf(&rt->log, CLUNET_LOG_INFO,
				"%s: tuned for another device or driver version; ignored", path);
			cJSON_Delete(db);
			db = NULL;
		}
	}
	free(text);
	free(path);
	rt->tune_db = db ? db : fresh_db(rt);
}

const char *rt_tune_get(rt_ctx *rt, const char *key)
{
	const cJSON *v;
	db_load(rt);
	if (!rt->tune_db)
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive((cJSON *)rt->tune_db, "entries"), key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

clunet_status rt_tune_put(rt_ctx *rt, const char *key, const char *variant)
{
	cJSON *entries, *s;
	db_load(rt);
	if (!rt->tune_db)
		return CLUNET_ERR_HOST_MEMORY;
	entries = cJSON_GetObjectItemCaseSensitive((cJSON *)rt->tune_db, "entries");
	s = cJSON_CreateString(variant);
	if (!s)
		return CLUNET_ERR_HOST_MEMORY;
	if (cJSON_GetObjectItemCaseSensitive(entries, key))
		cJSON_ReplaceItemInObjectCaseSensitive(entries, key, s);
	else
		cJSON_AddItemToObject(entries, key, s);
	return CLUNET_OK;
}

void rt_tune_del(rt_ctx *rt, const char *key)
{
	db_load(rt);
	if (rt->tune_db)
		cJSON_DeleteItemFromObjectCaseSensitive(
			cJSON_GetObjectItemCaseSensitive((cJSON *)rt->tune_db, "entries"), key);
}

clunet_status rt_tune_save(rt_ctx *rt)
{
	char *path = db_path(rt), *tmp = NULL, *text = NULL;
	FILE *f = NULL;
	clunet_status st = CLUNET_OK;
	if (!path)
		return cu_fail(CLUNET_ERR_IO, "tuning database: the program cache is off (no folder "
			       "to keep it in)");
	text = rt->tune_db ? cJSON_Print((cJSON *)rt->tune_db) : NULL;
	tmp = malloc(strlen(path) + 32);
	if (!text || !tmp) {
		st = CLUNET_ERR_HOST_MEMORY;
		goto out;
	}
	sprintf(tmp, "%s.tmp%ld", path, (long)getpid());
	f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fputc('\n', f) == EOF) {
		st = cu_fail(CLUNET_ERR_IO, "%s: cannot write", tmp);
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		st = cu_fail(CLUNET_ERR_IO, "%s: cannot write", tmp);
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0)
		st = cu_fail(CLUNET_ERR_IO, "%s: cannot replace", path);
out:
	if (f)
		fclose(f);
	if (st && tmp)
		remove(tmp);
	free(tmp);
	free(text);
	free(path);
	return st;
}

size_t rt_tune_count(rt_ctx *rt)
{
	db_load(rt);
	return rt->tune_db ? (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
				     (cJSON *)rt->tune_db, "entries"))
			   : 0;
}

int rt_tune_entry(rt_ctx *rt, size_t i, const char **key, const char **variant)
{
	const cJSON *e;
	db_load(rt);
	if (!rt->tune_db)
		return 0;
	e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive((cJSON *)rt->tune_db, "entries"),
			       (int)i);
	if (!e || !cJSON_IsString(e))
		return 0;
	*key = e->string;
	*variant = e->valuestring;
	return 1;
}

void rt_tune_free(rt_ctx *rt)
{
	cJSON_Delete((cJSON *)rt->tune_db);
	rt->tune_db = NULL;
	rt->tune_loaded = 0;
}
