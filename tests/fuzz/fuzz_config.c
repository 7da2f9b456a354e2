/* Fuzz target: config.json parsing and every model's config checks, without
 * a device. */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "io/config.h"
#include "models/model.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static const model_vt *const vts[] = { &unet2d_vt, &unet1d_vt, &unet2dcond_vt };
	cfg c;
	if (cfg_parse((const char *)data, size, "fuzz/config.json", &c) != CLUNET_OK)
		return 0;
	for (size_t i = 0; i < sizeof(vts) / sizeof(vts[0]); i++) {
		struct clunet_model m;
		memset(&m, 0, sizeof(m));
		m.vt = vts[i];
		vts[i]->parse_config(&m, &c);
		free(m.config);
	}
	cfg_free(&c);
	return 0;
}
