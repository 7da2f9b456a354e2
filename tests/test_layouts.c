/* The published UNet2DConditionModel layouts (tests/data/unet2dcond_configs:
 * SD 1.5, SD 2.1-768, SDXL base and refiner, LCM-SDXL; configs only) load
 * with seeded random weights, hold exactly diffusers' parameter count, and
 * run at the smallest latent size; the peak activation memory of a forward
 * at the sizes they are used at (64x64 latents for SD 1.5, 96x96 for 2.1-768,
 * 128x128 for SDXL) is planned and printed. Slow (gigabytes of random
 * weights): the suite "slow", run in the optimised build only. */
#include "testutil.h"

typedef struct layout {
	const char *name;
	uint64_t params; /* diffusers 0.26.3, from_config */
	int latent;      /* the latent size it is used at */
} layout;

static const layout layouts[] = {
	{ "sd15", 859520964ull, 64 },
	{ "sd21_768", 865910724ull, 96 },
	{ "sdxl_base", 2567463684ull, 128 },
	{ "sdxl_refiner", 2259526660ull, 128 },
	{ "lcm_sdxl", 2567545604ull, 128 },
};

int main(int argc, char **argv)
{
	clunet_context_t *ctx;
	clunet_context_options co;
	if (argc < 2) {
		printf("usage: test_layouts tests/data\n");
		return 2;
	}
	clunet_context_options_init(&co);
	if (clunet_context_create(&co, &ctx) != CLUNET_OK) {
		printf("cannot create a context: %s\n", clunet_last_error());
		return 1;
	}
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
		const layout *L = &layouts[i];
		char dir[4096];
		clunet_model_options mo;
		clunet_model_t *m = NULL;
		clunet_example_shape es;
		const clunet_tensor *in;
		size_t n;
		clunet_output out;
		clunet_plan_info pi;
		clunet_status st;
		snprintf(dir, sizeof(dir), "%s/unet2dcond_configs/%s", argv[1], L->name);
		clunet_model_options_init(&mo);
		mo.allow_random_weights = 1;
		mo.random_seed = 7;
		st = clunet_model_load(ctx, dir, &mo, &m);
		CHECK(st == CLUNET_OK, "%s: load: %s", L->name, clunet_last_error());
		if (st)
			continue;
		memset(&es, 0, sizeof(es));
		es.batch = 1;
		es.height = es.width = -1; /* the smallest valid size */
		es.length = 77;
		st = clunet_model_example_inputs(m, &es, &in, &n);
		if (!st)
			st = clunet_model_forward(m, in, n, &out);
		CHECK(st == CLUNET_OK, "%s: forward: %s", L->name, clunet_last_error());
		if (!st) {
			size_t k = 1, bad = 0;
			for (int d = 0; d < out.ndim; d++)
				k *= (size_t)out.shape[d];
			for (size_t j = 0; j < k; j++)
				bad += !isfinite(out.data[j]);
			CHECK(bad == 0, "%s: %zu outputs are not finite", L->name, bad);
		}
		for (int batch = 1; batch <= 2 && !st; batch++) {
			es.batch = batch;
			es.height = es.width = L->latent;
			st = clunet_model_example_inputs(m, &es, &in, &n);
			if (!st)
				st = clunet_model_plan(m, in, n, &pi);
			CHECK(st == CLUNET_OK, "%s: plan at %dx%d: %s", L->name, L->latent, L->latent,
			      clunet_last_error());
			if (st)
				break;
			printf("  %-13s %10llu parameters  %dx%d latents, batch %d: peak activations "
			       "%.1f MiB, weights %.1f MiB, %.1f GFLOP, %zu ops\n", L->name,
			       (unsigned long long)(pi.weight_bytes / 4), L->latent, L->latent, batch,
			       (double)pi.peak_activation_bytes / (1 << 20),
			       (double)pi.weight_bytes / (1 << 20), pi.gflop, pi.n_ops);
			CHECK(pi.weight_bytes == 4 * L->params, "%s: %llu weight values, diffusers has %llu "
			      "parameters", L->name, (unsigned long long)(pi.weight_bytes / 4),
			      (unsigned long long)L->params);
		}
		clunet_model_free(m);
	}
	clunet_context_destroy(ctx);
	return tu_finish("layouts");
}
