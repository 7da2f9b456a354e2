/* Fuzz target: the safetensors reader over arbitrary bytes. Every tensor the
 * reader accepts is converted to float, so every accepted offset is read. */
#include <stdlib.h>

#include "common/common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	st_file *f = NULL;
	if (st_open_memory(data, size, "fuzz.safetensors", &f) != CLUNET_OK)
		return 0;
	for (size_t i = 0; i < f->n; i++) {
		const st_tensor *t = &f->tensors[i];
		float *v = malloc(t->numel * sizeof(float) + 1);
		if (v && t->numel <= (64u << 20))
			cu_convert_to_f32(v, t->data, t->dtype, t->numel);
		free(v);
		(void)st_find(f, t->name);
	}
	st_close(f);
	return 0;
}
