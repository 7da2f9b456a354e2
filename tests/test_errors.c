/* Bad input, each expected to fail cleanly with a status and a message
 * that names the problem: hand-broken safetensors files and configs (in the
 * spirit of llama.cpp's test-gguf.cpp), weights that do not fit the config,
 * and forward inputs of the wrong kind. Run under the sanitizers too. */
#include <sys/stat.h>
#include <time.h>

#include "testutil.h"

#define BASE "unet2d/ddpm_cifar10_small"

static const char *fixtures;
static clunet_context_t *ctx;
static char *tmp;
static int case_no;

/* ------------------------------------------------------------ files */

static char *model_dir(void)
{
	char *d = malloc(4200);
	snprintf(d, 4200, "%s/case%02d", tmp, ++case_no);
	mkdir(d, 0755);
	return d;
}

static void copy_file(const char *from, const char *to)
{
	char *buf;
	FILE *f = fopen(from, "rb"), *g;
	long n;
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n);
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		n = 0;
	fclose(f);
	g = fopen(to, "wb");
	fwrite(buf, 1, (size_t)n, g);
	fclose(g);
	free(buf);
}

static void write_text(const char *dir, const char *name, const char *text)
{
	char p[4300];
	FILE *f;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
}

static void copy_base(const char *dir, int config, int weights)
{
	char a[4300], b[4300];
	if (config) {
		snprintf(a, sizeof(a), "%s/" BASE "/config.json", fixtures);
		snprintf(b, sizeof(b), "%s/config.json", dir);
		copy_file(a, b);
	}
	if (weights) {
		snprintf(a, sizeof(a), "%s/" BASE "/diffusion_pytorch_model.safetensors", fixtures);
		snprintf(b, sizeof(b), "%s/diffusion_pytorch_model.safetensors", dir);
		copy_file(a, b);
	}
}

/* A safetensors file from a header and `data_len` bytes of data. */
static void write_raw(const char *dir, const char *header, size_t data_len, int64_t header_len)
{
	char p[4300];
	FILE *f;
	uint64_t hl = header_len >= 0 ? (uint64_t)header_len : strlen(header);
	unsigned char len[8];
	snprintf(p, sizeof(p), "%s/diffusion_pytorch_model.safetensors", dir);
	f = fopen(p, "wb");
	for (int i = 0; i < 8; i++)
		len[i] = (unsigned char)(hl >> (8 * i));
	fwrite(len, 1, 8, f);
	fwrite(header, 1, strlen(header), f);
	for (size_t i = 0; i < data_len; i++)
		fputc((int)(i & 0xff), f);
	fclose(f);
}

/* Rewrites the config.json of dir with one key replaced (or removed when
 * value is NULL, or added). */
static void config_set(const char *dir, const char *key, const char *value)
{
	char p[4300], *text, *out, *at;
	FILE *f;
	long n;
	snprintf(p, sizeof(p), "%s/config.json", dir);
	f = fopen(p, "rb");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = calloc(1, (size_t)n + 1);
	if (fread(text, 1, (size_t)n, f) != (size_t)n)
		text[0] = 0;
	fclose(f);
	out = calloc(1, (size_t)n + 4096);
	{
		char pat[256];
		snprintf(pat, sizeof(pat), "\"%s\":", key);
		at = strstr(text, pat);
	}
	if (at) {
		/* the value ends at the next top-level ',' or '}' (values here have no nesting
		   beyond one list) */
		char *end = at + strlen(key) + 3;
		int depth = 0;
		while (*end && (depth > 0 || (*end != ',' && *end != '}'))) {
			if (*end == '[')
				depth++;
			if (*end == ']')
				depth--;
			end++;
		}
		memcpy(out, text, (size_t)(at - text));
		if (value)
			sprintf(out + strlen(out), "\"%s\": %s", key, value);
		else if (*end == ',')
			end++;
		strcat(out, end);
	} else {
		char *brace = strchr(text, '{');
		memcpy(out, text, (size_t)(brace - text) + 1);
		sprintf(out + strlen(out), "\"%s\": %s, ", key, value);
		strcat(out, brace + 1);
	}
	f = fopen(p, "wb");
	fputs(out, f);
	fclose(f);
	free(text);
	free(out);
}

/* Rewrites the weight file of dir through a callback on its tensors. */
typedef void (*edit_fn)(clunet_tensor *t, size_t *n);

static void weights_edit(const char *dir, edit_fn edit)
{
	char p[4300];
	clunet_tensor *t = NULL;
	size_t n = 0;
	snprintf(p, sizeof(p), "%s/" BASE "/diffusion_pytorch_model.safetensors", fixtures);
	if (clunet_tensors_read(p, &t, &n) != CLUNET_OK)
		return;
	t = realloc(t, (n + 1) * sizeof(clunet_tensor));
	edit(t, &n);
	snprintf(p, sizeof(p), "%s/diffusion_pytorch_model.safetensors", dir);
	clunet_tensors_write(p, t, n);
	clunet_tensors_free(t, n);
}

static void drop_conv_in_bias(clunet_tensor *t, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(t[i].name, "conv_in.bias")) {
			free((void *)t[i].name);
			free((void *)t[i].data);
			t[i] = t[--*n];
			return;
		}
}

static void reshape_conv_in(clunet_tensor *t, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(t[i].name, "conv_in.weight")) {
			t[i].shape[1] *= 9;
			t[i].shape[2] = t[i].shape[3] = 1;
		}
}

static void add_extra(clunet_tensor *t, size_t *n)
{
	float *v = calloc(4, sizeof(float));
	t[*n] = (clunet_tensor){ strdup("mid_block.bogus.weight"), CLUNET_F32, 1, { 4 }, v, 0 };
	(*n)++;
}

static void int_dtype(clunet_tensor *t, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(t[i].name, "conv_in.bias"))
			t[i].dtype = CLUNET_I32; /* same size, wrong kind */
}

/* ------------------------------------------------------------ checks */

static void expect_load(const char *what, const char *dir, clunet_status want, const char *needle)
{
	clunet_model_t *m = NULL;
	clunet_status st = clunet_model_load(ctx, dir, NULL, &m);
	const char *msg = clunet_last_error();
	printf("  %-42s %s: %s\n", what, clunet_status_name(st), st ? msg : "(loaded)");
	CHECK(st == want, "%s: got %s, expected %s", what, clunet_status_name(st),
	      clunet_status_name(want));
	CHECK(st == CLUNET_OK || strstr(msg, needle) != NULL, "%s: message lacks '%s'", what, needle);
	CHECK(st != CLUNET_OK || m != NULL, "%s: no model", what);
	CHECK(st == CLUNET_OK || m == NULL, "%s: a model came back with an error", what);
	clunet_model_free(m);
}

static void test_safetensors(void)
{
	static const char *const ok_a = "{\"conv_in.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
	char *d, header[512];

	d = model_dir();
	copy_base(d, 1, 0);
	write_text(d, "diffusion_pytorch_model.safetensors", "abc");
	expect_load("truncated file (3 bytes)", d, CLUNET_ERR_FORMAT, "truncated");
	free(d);

	d = model_dir();
	copy_base(d, 1, 1);
	{
		char p[4300];
		struct stat sb;
		snprintf(p, sizeof(p), "%s/diffusion_pytorch_model.safetensors", d);
		stat(p, &sb);
		if (truncate(p, sb.st_size * 9 / 10) != 0)
			perror("truncate");
	}
	expect_load("truncated data section", d, CLUNET_ERR_FORMAT, "outside the data section");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	snprintf(header, sizeof(header), "%s}", ok_a);
	write_raw(d, header, 8, 1000000);
	expect_load("header length beyond the file", d, CLUNET_ERR_FORMAT, "beyond the end");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, -1);
	expect_load("overlapping data_offsets", d, CLUNET_ERR_FORMAT, "overlapping");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[200],\"data_offsets\":[0,800]}}", 8, -1);
	expect_load("data_offsets out of range", d, CLUNET_ERR_FORMAT, "outside the data section");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, -1);
	expect_load("data_offsets reversed", d, CLUNET_ERR_FORMAT, "outside the data section");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1);
	expect_load("unknown dtype", d, CLUNET_ERR_FORMAT, "unsupported dtype 'Q4_K'");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1);
	expect_load("shape disagrees with data_offsets", d, CLUNET_ERR_FORMAT, "need 12");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, -1);
	expect_load("negative dimension", d, CLUNET_ERR_FORMAT, "shape entry 0");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, -1);
	expect_load("header is not JSON", d, CLUNET_ERR_FORMAT, "header is not a JSON object");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
		     "\"data_offsets\":[0,8]}}", 8, -1);
	expect_load("shape whose size overflows", d, CLUNET_ERR_FORMAT, "overflow");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_raw(d, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		     "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, -1);
	expect_load("duplicate tensor name", d, CLUNET_ERR_FORMAT, "appears twice");
	free(d);
}

static void test_weights(void)
{
	char *d;

	d = model_dir();
	copy_base(d, 1, 0);
	weights_edit(d, drop_conv_in_bias);
	expect_load("missing tensor", d, CLUNET_ERR_WEIGHTS, "missing tensor 'conv_in.bias'");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	weights_edit(d, reshape_conv_in);
	expect_load("tensor of the wrong shape", d, CLUNET_ERR_WEIGHTS,
		    "'conv_in.weight' has shape [16, 27, 1, 1], expected [16, 3, 3, 3]");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	weights_edit(d, add_extra);
	expect_load("extra tensor", d, CLUNET_ERR_WEIGHTS, "unexpected tensor 'mid_block.bogus.weight'");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	weights_edit(d, int_dtype);
	expect_load("integer weight", d, CLUNET_ERR_WEIGHTS, "'conv_in.bias' has dtype I32");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	expect_load("no weight file", d, CLUNET_ERR_IO, "missing weight file");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_text(d, "diffusion_pytorch_model.bin", "pickle");
	expect_load("only a .bin weight file", d, CLUNET_ERR_IO, "convert them to safetensors");
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	{
		char a[4300], b[4300];
		snprintf(a, sizeof(a), "%s/" BASE "/diffusion_pytorch_model.safetensors", fixtures);
		snprintf(b, sizeof(b), "%s/diffusion_pytorch_model.fp16.safetensors", d);
		copy_file(a, b);
	}
	expect_load("only the fp16 variant", d, CLUNET_ERR_IO, "--variant fp16");
	{
		clunet_model_t *m = NULL;
		clunet_model_options mo;
		clunet_model_options_init(&mo);
		mo.variant = "fp16";
		CHECK(clunet_model_load(ctx, d, &mo, &m) == CLUNET_OK, "the fp16 variant loads when "
		      "asked for: %s", clunet_last_error());
		clunet_model_free(m);
	}
	free(d);

	d = model_dir();
	expect_load("no config.json", d, CLUNET_ERR_IO, "config.json: cannot open");
	free(d);
}

static void test_config(void)
{
	static const struct {
		const char *what, *key, *value;
		clunet_status want;
		const char *needle;
	} cases[] = {
		{ "unknown block type", "down_block_types",
		  "[\"DownBlock2D\", \"FancyBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]",
		  CLUNET_ERR_CONFIG, "\"FancyBlock2D\" is not a UNet2DModel block" },
		{ "cross-attention block without context", "down_block_types",
		  "[\"DownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"]",
		  CLUNET_ERR_CONFIG, "needs cross_attention_dim" },
		{ "string where an integer belongs", "layers_per_block", "\"two\"", CLUNET_ERR_CONFIG,
		  "key 'layers_per_block': expected an integer, got a string" },
		{ "fractional integer", "in_channels", "3.5", CLUNET_ERR_CONFIG,
		  "key 'in_channels': expected an integer" },
		{ "unknown activation", "act_fn", "\"tanhshrink\"", CLUNET_ERR_CONFIG,
		  "key 'act_fn': \"tanhshrink\" is not an activation" },
		{ "unknown time embedding", "time_embedding_type", "\"rotary\"", CLUNET_ERR_CONFIG,
		  "key 'time_embedding_type': \"rotary\" is not one of" },
		{ "channel list of the wrong length", "block_out_channels", "[16, 16, 16]",
		  CLUNET_ERR_CONFIG, "has 3 entries but there are 4 down blocks" },
		{ "groups that do not divide channels", "norm_num_groups", "5", CLUNET_ERR_CONFIG,
		  "5 groups do not divide its 16 channels" },
		{ "up and down block counts differ", "up_block_types", "[\"UpBlock2D\"]",
		  CLUNET_ERR_CONFIG, "has 1 blocks but down_block_types has 4" },
		{ "learned embedding without a size", "time_embedding_type", "\"learned\"",
		  CLUNET_ERR_CONFIG, "num_train_timesteps" },
		{ "missing _class_name", "_class_name", NULL, CLUNET_ERR_CONFIG, "'_class_name': missing" },
		{ "another model class", "_class_name", "\"UNet3DConditionModel\"", CLUNET_ERR_UNSUPPORTED,
		  "UNet3DConditionModel is not supported" },
		{ "not a UNet at all", "_class_name", "\"AutoencoderKL\"", CLUNET_ERR_CONFIG,
		  "\"AutoencoderKL\" is not a diffusers UNet model" },
		{ "unknown keys are ignored", "some_future_option", "{\"nested\": [1, 2]}", CLUNET_OK, "" },
		{ "downsample padding that breaks the skips", "downsample_padding", "2", CLUNET_ERR_CONFIG,
		  "key 'downsample_padding': is 2" },
		{ "a sample_size list", "sample_size", "[32, 48]", CLUNET_OK, "" },
	};
	char *d;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		d = model_dir();
		copy_base(d, 1, 1);
		config_set(d, cases[i].key, cases[i].value);
		expect_load(cases[i].what, d, cases[i].want, cases[i].needle);
		free(d);
	}
	{ /* shapes that do not fit together: diffusers' forward() fails too */
		clunet_model_options mo;
		clunet_model_t *m = NULL;
		clunet_status st;
		d = model_dir();
		write_text(d, "config.json", "{\"_class_name\": \"UNet2DModel\", \"norm_num_groups\": 4, "
			   "\"block_out_channels\": [8, 8, 8], \"down_block_types\": [\"DownBlock2D\", "
			   "\"SkipDownBlock2D\", \"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\", "
			   "\"UpBlock2D\", \"UpBlock2D\"]}");
		clunet_model_options_init(&mo);
		mo.allow_random_weights = 1;
		st = clunet_model_load(ctx, d, &mo, &m);
		printf("  %-42s %s: %s\n", "a Skip block among plain blocks", clunet_status_name(st),
		       clunet_last_error());
		CHECK(st == CLUNET_ERR_CONFIG && strstr(clunet_last_error(), "config.json: this "
							"configuration cannot run"),
		      "a Skip block among plain blocks is a config error");
		clunet_model_free(m);
		free(d);
	}
	d = model_dir();
	copy_base(d, 0, 1);
	write_text(d, "config.json", "{\"_class_name\": \"UNet2DModel\", \"in_channels\": 3,,}");
	expect_load("invalid JSON", d, CLUNET_ERR_FORMAT, "invalid JSON");
	free(d);
	d = model_dir();
	copy_base(d, 0, 1);
	write_text(d, "config.json", "[1, 2, 3]");
	expect_load("JSON that is not an object", d, CLUNET_ERR_FORMAT, "expected a JSON object");
	free(d);
	d = model_dir();
	copy_base(d, 0, 1);
	{
		char p[4300];
		snprintf(p, sizeof(p), "%s/config.json", d);
		mkdir(p, 0755);
	}
	expect_load("config.json that is a folder", d, CLUNET_ERR_IO, "config.json: not a regular file");
	free(d);
}

static void expect_forward(clunet_model_t *m, const char *what, const clunet_tensor *in, size_t n,
			   clunet_status want, const char *needle)
{
	clunet_output out;
	clunet_status st = clunet_model_forward(m, in, n, &out);
	const char *msg = clunet_last_error();
	printf("  %-42s %s: %s\n", what, clunet_status_name(st), st ? msg : "(ran)");
	CHECK(st == want, "%s: got %s, expected %s", what, clunet_status_name(st),
	      clunet_status_name(want));
	CHECK(st == CLUNET_OK || strstr(msg, needle) != NULL, "%s: message lacks '%s'", what, needle);
}

static void test_inputs(void)
{
	char p[4300];
	clunet_model_t *m = NULL;
	static float sample[2 * 4 * 36 * 36];
	static int64_t t64 = 10;
	static int32_t t32[3] = { 1, 2, 3 };
	static float cls = 1;
	clunet_tensor in[3];
	snprintf(p, sizeof(p), "%s/" BASE, fixtures);
	if (clunet_model_load(ctx, p, NULL, &m) != CLUNET_OK) {
		CHECK(0, "cannot load %s: %s", p, clunet_last_error());
		return;
	}
	in[0] = (clunet_tensor){ "sample", CLUNET_F32, 4, { 1, 3, 36, 32 }, sample, 0 };
	in[1] = (clunet_tensor){ "timestep", CLUNET_I64, 0, { 0 }, &t64, 0 };
	expect_forward(m, "height not a multiple of 2^(levels-1)", in, 2, CLUNET_ERR_INPUT,
		       "height 36 and width 32 must be multiples of 8");
	in[0].shape[1] = 4;
	in[0].shape[2] = 32;
	expect_forward(m, "wrong channel count", in, 2, CLUNET_ERR_INPUT,
		       "input 'sample': expected a float tensor [N, 3, H, W], got F32 [1, 4, 32, 32]");
	in[0].shape[1] = 3;
	expect_forward(m, "missing timestep", in, 1, CLUNET_ERR_INPUT, "missing input 'timestep'");
	expect_forward(m, "missing sample", in + 1, 1, CLUNET_ERR_INPUT, "missing input 'sample'");
	in[0].dtype = CLUNET_I32;
	expect_forward(m, "integer sample", in, 2, CLUNET_ERR_INPUT, "expected a float tensor");
	in[0].dtype = CLUNET_F32;
	in[0].shape[0] = 2;
	in[1] = (clunet_tensor){ "timestep", CLUNET_I32, 1, { 3 }, t32, 0 };
	expect_forward(m, "three timesteps for a batch of two", in, 2, CLUNET_ERR_INPUT,
		       "1-D tensor of 1 or 2 values");
	in[1] = (clunet_tensor){ "timestep", CLUNET_I64, 0, { 0 }, &t64, 0 };
	in[2] = (clunet_tensor){ "class_labels", CLUNET_F32, 0, { 0 }, &cls, 0 };
	expect_forward(m, "class labels for an unconditional model", in, 3, CLUNET_ERR_INPUT,
		       "has no class embedding");
	in[2] = (clunet_tensor){ "encoder_hidden_states", CLUNET_F32, 0, { 0 }, &cls, 0 };
	expect_forward(m, "an argument UNet2DModel does not take", in, 3, CLUNET_ERR_INPUT,
		       "unexpected input 'encoder_hidden_states'");
	sample[5] = NAN;
	expect_forward(m, "NaN in the sample", in, 2, CLUNET_ERR_INPUT, "not finite");
	sample[5] = 0;
	in[0].ndim = 9;
	expect_forward(m, "nine dimensions", in, 2, CLUNET_ERR_INPUT, "9 dimensions");
	in[0].ndim = 4;
	in[0].shape[2] = in[0].shape[3] = (int64_t)1 << 31;
	expect_forward(m, "2^31 x 2^31 sample", in, 2, CLUNET_ERR_INPUT, "more than 2^31 elements");
	in[0].shape[2] = in[0].shape[3] = 32;
	expect_forward(m, "a good forward after the errors", in, 2, CLUNET_OK, "");
	clunet_model_free(m);
}

static void rename_fourier(clunet_tensor *t, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(t[i].name, "time_proj.weight")) {
			free((void *)t[i].name);
			t[i].name = strdup("time_proj.W");
		}
}

static void twin_fourier(clunet_tensor *t, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(t[i].name, "time_proj.weight")) {
			size_t bytes = (size_t)t[i].shape[0] * 4;
			void *copy = malloc(bytes);
			memcpy(copy, t[i].data, bytes);
			t[*n] = t[i];
			t[*n].name = strdup("time_proj.W");
			t[*n].data = copy;
			(*n)++;
			return;
		}
}

/* The two names of a Gaussian Fourier weight: either one, or both. */
static void test_fourier_names(void)
{
	static const char *const what[2] = { "Fourier weight stored as time_proj.W",
					     "Fourier weight under both names" };
	for (int k = 0; k < 2; k++) {
		char *d = model_dir(), a[4300], b[4300];
		clunet_tensor *t = NULL;
		size_t n = 0;
		snprintf(a, sizeof(a), "%s/unet2d/ncsnpp_small/config.json", fixtures);
		snprintf(b, sizeof(b), "%s/config.json", d);
		copy_file(a, b);
		snprintf(a, sizeof(a), "%s/unet2d/ncsnpp_small/diffusion_pytorch_model.safetensors", fixtures);
		if (clunet_tensors_read(a, &t, &n) == CLUNET_OK) {
			t = realloc(t, (n + 1) * sizeof(*t));
			(k ? twin_fourier : rename_fourier)(t, &n);
			snprintf(b, sizeof(b), "%s/diffusion_pytorch_model.safetensors", d);
			clunet_tensors_write(b, t, n);
			clunet_tensors_free(t, n);
		}
		expect_load(what[k], d, CLUNET_OK, "");
		free(d);
	}
}

/* Writes the base fixture's weights as two shards and their index, with
 * one more weight_map entry when override_entry is given. */
static void write_shards(const char *dir, const char *override_entry)
{
	char p[4300];
	clunet_tensor *t = NULL;
	size_t n = 0, na = 0, nb = 0;
	clunet_tensor *a, *b;
	FILE *f;
	snprintf(p, sizeof(p), "%s/" BASE "/diffusion_pytorch_model.safetensors", fixtures);
	if (clunet_tensors_read(p, &t, &n) != CLUNET_OK)
		return;
	a = calloc(n, sizeof(*a));
	b = calloc(n, sizeof(*b));
	for (size_t i = 0; i < n; i++) {
		if (i % 2)
			b[nb++] = t[i];
		else
			a[na++] = t[i];
	}
	snprintf(p, sizeof(p), "%s/diffusion_pytorch_model-00001-of-00002.safetensors", dir);
	clunet_tensors_write(p, a, na);
	snprintf(p, sizeof(p), "%s/diffusion_pytorch_model-00002-of-00002.safetensors", dir);
	clunet_tensors_write(p, b, nb);
	snprintf(p, sizeof(p), "%s/diffusion_pytorch_model.safetensors.index.json", dir);
	f = fopen(p, "w");
	fprintf(f, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\"%s\": \"diffusion_pytorch_model-0000%d-of-00002.safetensors\"",
			i ? ", " : "", t[i].name, (int)(i % 2) + 1);
	if (override_entry)
		fprintf(f, ", %s", override_entry);
	fprintf(f, "}}");
	fclose(f);
	free(a);
	free(b);
	clunet_tensors_free(t, n);
}

static void test_sharded(void)
{
	char *d = model_dir(), p[4300];
	clunet_model_t *m = NULL;
	clunet_tensor *in = NULL, *exp = NULL;
	size_t n_in = 0, n_exp = 0;
	clunet_output out;
	clunet_status st;
	copy_base(d, 1, 0);
	write_shards(d, NULL);
	st = clunet_model_load(ctx, d, NULL, &m);
	CHECK(st == CLUNET_OK, "sharded weights load: %s", clunet_last_error());
	snprintf(p, sizeof(p), "%s/" BASE "/inputs.safetensors", fixtures);
	clunet_tensors_read(p, &in, &n_in);
	snprintf(p, sizeof(p), "%s/" BASE "/expected.safetensors", fixtures);
	clunet_tensors_read(p, &exp, &n_exp);
	if (!st && in && exp) {
		st = clunet_model_forward(m, in, n_in, &out);
		CHECK(st == CLUNET_OK, "sharded forward: %s", clunet_last_error());
		if (!st) {
			size_t n = (size_t)(exp[0].shape[0] * exp[0].shape[1] * exp[0].shape[2] * exp[0].shape[3]);
			double e = tu_rel_l2(out.data, exp[0].data, n);
			printf("  %-42s rel L2 %.3e against diffusers\n", "sharded checkpoint (2 shards)", e);
			CHECK(e <= 1e-4, "sharded forward error %.3e", e);
		}
	}
	clunet_model_free(m);
	clunet_tensors_free(in, n_in);
	clunet_tensors_free(exp, n_exp);
	free(d);

	d = model_dir();
	copy_base(d, 1, 0);
	write_shards(d, "\"extra.weight\": \"missing-shard.safetensors\"");
	expect_load("index naming a missing shard", d, CLUNET_ERR_IO, "missing-shard.safetensors: cannot open");
	free(d);
	d = model_dir();
	copy_base(d, 1, 0);
	write_shards(d, "\"extra.weight\": \"../../etc/passwd\"");
	expect_load("index pointing outside the folder", d, CLUNET_ERR_FORMAT, "must be the name of a file");
	free(d);
	d = model_dir();
	copy_base(d, 1, 0);
	write_shards(d, "\"conv_in.bias\": \"diffusion_pytorch_model-00002-of-00002.safetensors\"");
	expect_load("index putting a tensor in the wrong shard", d, CLUNET_ERR_FORMAT,
		    "'conv_in.bias' is not in shard");
	free(d);
	d = model_dir();
	copy_base(d, 1, 0);
	write_text(d, "diffusion_pytorch_model.safetensors.index.json", "{\"metadata\": {}}");
	expect_load("index without weight_map", d, CLUNET_ERR_FORMAT, "'weight_map'");
	free(d);
}

/* The output stays valid until the next forward, whatever else is planned. */
static void test_output_lifetime(void)
{
	char p[4300];
	clunet_model_t *m = NULL;
	clunet_tensor *in = NULL;
	size_t n_in = 0;
	clunet_output out;
	float first[3 * 32 * 32];
	snprintf(p, sizeof(p), "%s/" BASE, fixtures);
	if (clunet_model_load(ctx, p, NULL, &m) != CLUNET_OK)
		return;
	snprintf(p, sizeof(p), "%s/" BASE "/inputs.safetensors", fixtures);
	clunet_tensors_read(p, &in, &n_in);
	if (in && clunet_model_forward(m, in, n_in, &out) == CLUNET_OK) {
		static float other[6 * 3 * 32 * 32];
		int64_t t = 3;
		clunet_plan_info info;
		memcpy(first, out.data, sizeof(first));
		/* more shapes than plans are kept (batches: the same kernels, built once) */
		for (int b = 2; b <= 6; b++) {
			clunet_tensor x[2] = { { "sample", CLUNET_F32, 4, { b, 3, 32, 32 }, other, 0 },
					       { "timestep", CLUNET_I64, 0, { 0 }, &t, 0 } };
			clunet_model_plan(m, x, 2, &info);
		}
		CHECK(!memcmp(first, out.data, sizeof(first)),
		      "the output of a forward survives planning other shapes");
		printf("  %-42s ok\n", "output kept while plans are evicted");
	}
	clunet_tensors_free(in, n_in);
	clunet_model_free(m);
}

/* clunet_tensors_write refuses what it cannot write faithfully. */
static void test_write_checks(void)
{
	char p[4300];
	float v[4] = { 1, 2, 3, 4 };
	clunet_tensor bad[2] = { { "a", CLUNET_F32, 1, { -1 }, v, 0 }, { "a", CLUNET_F32, 1, { 4 }, v, 0 } };
	snprintf(p, sizeof(p), "%s/written.safetensors", tmp);
	CHECK(clunet_tensors_write(p, bad, 1) == CLUNET_ERR_ARGUMENT, "negative dimension refused");
	bad[0].shape[0] = 4;
	CHECK(clunet_tensors_write(p, bad, 2) == CLUNET_ERR_ARGUMENT &&
	      strstr(clunet_last_error(), "twice"), "duplicate names refused");
	bad[0].data = NULL;
	CHECK(clunet_tensors_write(p, bad, 1) == CLUNET_ERR_ARGUMENT, "missing data refused");
	bad[0].data = v;
	bad[0].shape[0] = (int64_t)1 << 62;
	CHECK(clunet_tensors_write(p, bad, 1) == CLUNET_ERR_ARGUMENT, "overflowing size refused");
	printf("  %-42s ok\n", "tensor writer checks");
}

/* A deep configuration loads without allocating its smallest input. */
static void test_deep_config(void)
{
	char *d = model_dir(), cfg[2048];
	size_t k = 0;
	clunet_model_t *m = NULL;
	clunet_model_options mo;
	double t0;
	clunet_status st;
	k += (size_t)snprintf(cfg + k, sizeof(cfg) - k, "{\"_class_name\": \"UNet2DModel\", "
			      "\"norm_num_groups\": 4, \"layers_per_block\": 1, \"add_attention\": false, "
			      "\"block_out_channels\": [8");
	for (int i = 1; i < 16; i++)
		k += (size_t)snprintf(cfg + k, sizeof(cfg) - k, ", 8");
	k += (size_t)snprintf(cfg + k, sizeof(cfg) - k, "], \"down_block_types\": [\"DownBlock2D\"");
	for (int i = 1; i < 16; i++)
		k += (size_t)snprintf(cfg + k, sizeof(cfg) - k, ", \"DownBlock2D\"");
	k += (size_t)snprintf(cfg + k, sizeof(cfg) - k, "], \"up_block_types\": [\"UpBlock2D\"");
	for (int i = 1; i < 16; i++)
		k += (size_t)snprintf(cfg + k, sizeof(cfg) - k, ", \"UpBlock2D\"");
	snprintf(cfg + k, sizeof(cfg) - k, "]}");
	write_text(d, "config.json", cfg);
	clunet_model_options_init(&mo);
	mo.allow_random_weights = 1;
	t0 = (double)clock() / CLOCKS_PER_SEC;
	st = clunet_model_load(ctx, d, &mo, &m);
	t0 = (double)clock() / CLOCKS_PER_SEC - t0;
	printf("  %-42s %s in %.2f s of CPU\n", "16 levels (smallest input 32768^2)",
	       clunet_status_name(st), t0);
	CHECK(st == CLUNET_OK && t0 < 5, "a 16-level model loads quickly: %s", clunet_last_error());
	clunet_model_free(m);
	free(d);
}

/* UNet1DModel: lengths, timesteps, configurations and weights it refuses. */
static void test_unet1d(void)
{
	char p[4300], *d;
	clunet_model_t *m = NULL;
	static float sample[2 * 14 * 1024];
	float t3[3] = { 0.1f, 0.2f, 0.3f }, t1 = 0.5f;
	snprintf(p, sizeof(p), "%s/unet1d/dance_default", fixtures);
	if (clunet_model_load(ctx, p, NULL, &m) == CLUNET_OK) {
		clunet_tensor in[2] = { { "sample", CLUNET_F32, 3, { 1, 2, 500 }, sample, 0 },
					{ "timestep", CLUNET_F32, 0, { 0 }, &t1, 0 } };
		expect_forward(m, "1-D length not a multiple", in, 2, CLUNET_ERR_INPUT,
			       "length 500 does not fit this block layout: it must be a multiple of 8");
		in[0].shape[2] = 16;
		expect_forward(m, "1-D length too short for reflect padding", in, 2, CLUNET_ERR_INPUT,
			       "reflect padding");
		in[0].shape[0] = 2;
		in[0].shape[2] = 512;
		in[1] = (clunet_tensor){ "timestep", CLUNET_F32, 1, { 3 }, t3, 0 };
		expect_forward(m, "three timesteps for a batch of two (1-D)", in, 2, CLUNET_ERR_INPUT,
			       "1-D tensor of 1 or 2 values");
		in[0].shape[1] = 3;
		expect_forward(m, "wrong channel count (1-D)", in, 2, CLUNET_ERR_INPUT,
			       "expected a float tensor [N, 2, L]");
		clunet_model_free(m);
	}
	snprintf(p, sizeof(p), "%s/unet1d/value_function", fixtures);
	m = NULL;
	if (clunet_model_load(ctx, p, NULL, &m) == CLUNET_OK) {
		int64_t ts[2] = { 1, 2 };
		clunet_tensor in[2] = { { "sample", CLUNET_F32, 3, { 2, 14, 128 }, sample, 0 },
					{ "timestep", CLUNET_I64, 1, { 2 }, ts, 0 } };
		expect_forward(m, "value function horizon too long", in, 2, CLUNET_ERR_INPUT,
			       "needs the length to shrink to 1");
		clunet_model_free(m);
	}
	{
		static const struct {
			const char *what, *key, *value, *needle;
		} cases[] = {
			{ "MidResTemporalBlock1D downsampling", "downsample_each_block", "true",
			  "fails in diffusers 0.26.3" },
			{ "unknown 1-D block", "mid_block_type", "\"FancyMid1D\"",
			  "\"FancyMid1D\" is not a UNet1DModel mid block" },
			{ "RL blocks without the time MLP", "use_timestep_embedding", "false",
			  "must be true for DownResnetBlock1D" },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char a[4300], b[4300];
			d = model_dir();
			snprintf(a, sizeof(a), "%s/unet1d/hopper_planner_h32/config.json", fixtures);
			snprintf(b, sizeof(b), "%s/config.json", d);
			copy_file(a, b);
			snprintf(a, sizeof(a), "%s/unet1d/hopper_planner_h32/diffusion_pytorch_model.safetensors",
				 fixtures);
			snprintf(b, sizeof(b), "%s/diffusion_pytorch_model.safetensors", d);
			copy_file(a, b);
			config_set(d, cases[i].key, cases[i].value);
			expect_load(cases[i].what, d, CLUNET_ERR_CONFIG, cases[i].needle);
			free(d);
		}
	}
	{ /* a Fourier projection of neither the old nor the newer width */
		char a[4300], b[4300];
		clunet_tensor *t = NULL;
		size_t n = 0;
		d = model_dir();
		snprintf(a, sizeof(a), "%s/unet1d/dance_default/config.json", fixtures);
		snprintf(b, sizeof(b), "%s/config.json", d);
		copy_file(a, b);
		snprintf(a, sizeof(a), "%s/unet1d/dance_default/diffusion_pytorch_model.safetensors", fixtures);
		if (clunet_tensors_read(a, &t, &n) == CLUNET_OK) {
			for (size_t i = 0; i < n; i++)
				if (!strcmp(t[i].name, "time_proj.weight"))
					t[i].shape[0] = 4; /* fewer values: a shorter prefix of the data */
			snprintf(b, sizeof(b), "%s/diffusion_pytorch_model.safetensors", d);
			clunet_tensors_write(b, t, n);
			clunet_tensors_free(t, n);
		}
		expect_load("Fourier weight of an unknown width", d, CLUNET_ERR_WEIGHTS,
			    "neither 8 (diffusers 0.26.3) nor");
		free(d);
	}
}


/* ---- UNet2DConditionModel ---- */

/* Loads fixture unet2dcond/<name> and its inputs. */
static clunet_model_t *cond_case(const char *name, clunet_tensor **in, size_t *n)
{
	char p[4300];
	clunet_model_t *m = NULL;
	snprintf(p, sizeof(p), "%s/unet2dcond/%s/inputs.safetensors", fixtures, name);
	if (clunet_tensors_read(p, in, n) != CLUNET_OK) {
		CHECK(0, "cannot read %s: %s", p, clunet_last_error());
		return NULL;
	}
	snprintf(p, sizeof(p), "%s/unet2dcond/%s", fixtures, name);
	if (clunet_model_load(ctx, p, NULL, &m) != CLUNET_OK) {
		CHECK(0, "cannot load %s: %s", p, clunet_last_error());
		clunet_tensors_free(*in, *n);
		return NULL;
	}
	return m;
}

static int find_in(clunet_tensor *in, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(in[i].name, name))
			return (int)i;
	return -1;
}

/* in without entry k (a shallow copy into out) */
static size_t without(const clunet_tensor *in, size_t n, int k, clunet_tensor *out)
{
	size_t j = 0;
	for (size_t i = 0; i < n; i++)
		if ((int)i != k)
			out[j++] = in[i];
	return j;
}

static void test_unet2dcond(void)
{
	clunet_tensor *in = NULL, cp[64];
	size_t n = 0, nc;
	clunet_model_t *m;
	int k;

	if ((m = cond_case("sd15_tiny", &in, &n)) != NULL) {
		k = find_in(in, n, "encoder_hidden_states");
		memcpy(cp, in, n * sizeof(clunet_tensor));
		cp[k].shape[2] = 15; /* a narrower (and shorter) view of the same data */
		expect_forward(m, "encoder states of the wrong width", cp, n, CLUNET_ERR_INPUT,
			       "input 'encoder_hidden_states': expected a float tensor [2, tokens, 16]");
		nc = without(in, n, k, cp);
		expect_forward(m, "no encoder states", cp, nc, CLUNET_ERR_INPUT,
			       "missing input 'encoder_hidden_states'");
		{
			clunet_freeu f = { 0.9f, 0.2f, 1.5f, 1.6f, 2, 0 };
			clunet_status st = clunet_model_set_freeu(m, &f);
			CHECK(st == CLUNET_ERR_ARGUMENT && strstr(clunet_last_error(), "needs the clFFT"),
			      "FreeU threshold 2 without FFT: %s", clunet_last_error());
		}
		{
			char p[4300];
			clunet_status st;
			snprintf(p, sizeof(p), "%s/unet2dcond/lora_diffusers/lora_nomatch.safetensors",
				 fixtures);
			st = clunet_model_load_lora(m, p, NULL);
			printf("  %-42s %s: %s\n", "LoRA whose keys match no layer",
			       clunet_status_name(st), clunet_last_error());
			CHECK(st == CLUNET_ERR_WEIGHTS && strstr(clunet_last_error(), "attn3"),
			      "LoRA no-match: %s", clunet_last_error());
			snprintf(p, sizeof(p), "%s/unet2dcond/sd15_tiny/inputs.safetensors", fixtures);
			st = clunet_model_load_lora(m, p, NULL);
			CHECK(st == CLUNET_ERR_WEIGHTS && strstr(clunet_last_error(), "not a LoRA tensor"),
			      "a file that is no LoRA: %s", clunet_last_error());
			CHECK(clunet_model_set_lora_scale(m, 0.5f) == CLUNET_ERR_ARGUMENT,
			      "scale without a LoRA: %s", clunet_last_error());
		}
		expect_forward(m, "a good forward after the errors", in, n, CLUNET_OK, "");
		clunet_model_free(m);
		clunet_tensors_free(in, n);
	}
	if ((m = cond_case("sdxl_tiny", &in, &n)) != NULL) {
		nc = without(in, n, find_in(in, n, "added_cond_kwargs.time_ids"), cp);
		expect_forward(m, "SDXL without time_ids", cp, nc, CLUNET_ERR_INPUT,
			       "missing input 'added_cond_kwargs.time_ids'");
		nc = without(in, n, find_in(in, n, "added_cond_kwargs.text_embeds"), cp);
		expect_forward(m, "SDXL without text_embeds", cp, nc, CLUNET_ERR_INPUT,
			       "missing input 'added_cond_kwargs.text_embeds'");
		memcpy(cp, in, n * sizeof(clunet_tensor));
		cp[find_in(cp, n, "added_cond_kwargs.text_embeds")].shape[1] = 11;
		expect_forward(m, "text_embeds of the wrong width", cp, n, CLUNET_ERR_INPUT,
			       "do not make the 60 features");
		clunet_model_free(m);
		clunet_tensors_free(in, n);
	}
	if ((m = cond_case("controlnet_residuals", &in, &n)) != NULL) {
		nc = without(in, n, find_in(in, n, "down_block_additional_residuals.8"), cp);
		expect_forward(m, "ControlNet: one residual short", cp, nc, CLUNET_ERR_INPUT,
			       "8 given, but the model has 9 skip connections");
		memcpy(cp, in, n * sizeof(clunet_tensor));
		cp[find_in(cp, n, "down_block_additional_residuals.3")].shape[1] = 4;
		expect_forward(m, "ControlNet: a residual of the wrong shape", cp, n, CLUNET_ERR_INPUT,
			       "input 'down_block_additional_residuals.3': shape [2, 4,");
		memcpy(cp, in, n * sizeof(clunet_tensor));
		cp[find_in(cp, n, "mid_block_additional_residual")].shape[2] = 2;
		expect_forward(m, "ControlNet: mid residual of the wrong shape", cp, n, CLUNET_ERR_INPUT,
			       "input 'mid_block_additional_residual'");
		nc = without(in, n, find_in(in, n, "down_block_additional_residuals.4"), cp);
		expect_forward(m, "ControlNet: a gap in the numbering", cp, nc, CLUNET_ERR_INPUT,
			       "count from .0 without gaps");
		clunet_model_free(m);
		clunet_tensors_free(in, n);
	}
	if ((m = cond_case("t2i_adapter_sd", &in, &n)) != NULL) {
		memcpy(cp, in, n * sizeof(clunet_tensor));
		cp[n] = cp[find_in(cp, n, "down_intrablock_additional_residuals.0")];
		cp[n].name = "down_intrablock_additional_residuals.3";
		expect_forward(m, "T2I-Adapter: a residual too many", cp, n + 1, CLUNET_ERR_INPUT,
			       "no place for this T2I-Adapter residual");
		memcpy(cp, in, n * sizeof(clunet_tensor));
		cp[find_in(cp, n, "down_intrablock_additional_residuals.1")].shape[3] = 4;
		expect_forward(m, "T2I-Adapter: a residual of the wrong shape", cp, n, CLUNET_ERR_INPUT,
			       "input 'down_intrablock_additional_residuals.1': shape");
		clunet_model_free(m);
		clunet_tensors_free(in, n);
	}
	if ((m = cond_case("if_style", &in, &n)) != NULL) {
		memcpy(cp, in, n * sizeof(clunet_tensor));
		k = find_in(cp, n, "sample");
		cp[k].shape[2] = 7; /* the first rows of the same data */
		expect_forward(m, "odd size into ResnetUpsampleBlock2D", cp, n, CLUNET_ERR_INPUT,
			       "cannot upsample to odd sizes");
		clunet_model_free(m);
		clunet_tensors_free(in, n);
	}
	{ /* configs diffusers would refuse or clunet does not build */
		static const struct {
			const char *what, *key, *value, *needle;
			clunet_status want;
		} cases[] = {
			{ "cross_attention_dim per block that differ", "cross_attention_dim", "[16, 24, 16]",
			  "one encoder_hidden_states feeds both", CLUNET_ERR_CONFIG },
			{ "GLIGEN attention", "attention_type", "\"gated\"", "GLIGEN",
			  CLUNET_ERR_UNSUPPORTED },
			{ "Kandinsky addition embedding", "addition_embed_type", "\"image\"", "Kandinsky",
			  CLUNET_ERR_UNSUPPORTED },
			{ "num_attention_heads set", "num_attention_heads", "4",
			  "must be null in diffusers 0.26.3", CLUNET_ERR_CONFIG },
			{ "AttnDownBlock2D", "down_block_types",
			  "[\"AttnDownBlock2D\", \"CrossAttnDownBlock2D\", \"DownBlock2D\"]",
			  "does not take the `scale` argument", CLUNET_ERR_CONFIG },
			{ "up and down blocks of different counts", "up_block_types",
			  "[\"UpBlock2D\", \"CrossAttnUpBlock2D\"]", "has 2 blocks but down_block_types has 3",
			  CLUNET_ERR_CONFIG },
			{ "norm_num_groups null with plain blocks", "norm_num_groups", "null",
			  "null only works with the K blocks", CLUNET_ERR_CONFIG },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			char a[4300], b[4300], *d = model_dir();
			snprintf(a, sizeof(a), "%s/unet2dcond/sd15_tiny/config.json", fixtures);
			snprintf(b, sizeof(b), "%s/config.json", d);
			copy_file(a, b);
			snprintf(a, sizeof(a), "%s/unet2dcond/sd15_tiny/diffusion_pytorch_model.safetensors",
				 fixtures);
			snprintf(b, sizeof(b), "%s/diffusion_pytorch_model.safetensors", d);
			copy_file(a, b);
			config_set(d, cases[i].key, cases[i].value);
			expect_load(cases[i].what, d, cases[i].want, cases[i].needle);
			free(d);
		}
	}
}

/* More device memory than the device has: a status, not a crash. */
static void test_device_memory(void)
{
	char *d = model_dir();
	clunet_model_t *m = NULL;
	clunet_model_options mo;
	clunet_status st;
	clunet_device_info dev;
	char cfg[512];
	/* one level of 65536 channels: the first time-embedding weight alone is 64 GiB */
	write_text(d, "config.json", "{\"_class_name\": \"UNet2DModel\", \"block_out_channels\": [65536], "
		   "\"down_block_types\": [\"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"]}");
	clunet_model_options_init(&mo);
	mo.allow_random_weights = 1;
	st = clunet_model_load(ctx, d, &mo, &m);
	printf("  %-42s %s: %s\n", "weights larger than the device", clunet_status_name(st),
	       clunet_last_error());
	CHECK(st == CLUNET_ERR_DEVICE_MEMORY && m == NULL, "weights beyond the device's memory");
	CHECK(strstr(clunet_last_error(), "largest allocation") != NULL, "message says why");
	free(d);

	/* activations: a small model at a sample size whose arena exceeds the device */
	clunet_context_device(ctx, &dev);
	d = model_dir();
	snprintf(cfg, sizeof(cfg), "{\"_class_name\": \"UNet2DModel\", \"block_out_channels\": [64], "
		 "\"norm_num_groups\": 8, \"layers_per_block\": 1, \"add_attention\": false, "
		 "\"down_block_types\": [\"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\"]}");
	write_text(d, "config.json", cfg);
	st = clunet_model_load(ctx, d, &mo, &m);
	CHECK(st == CLUNET_OK, "small model loads: %s", clunet_last_error());
	if (!st) {
		/* a few live activations of 64 x side^2 floats exceed the largest allocation */
		int64_t side = 64;
		while ((uint64_t)side * side * 64 * 4 * 4 < dev.max_alloc_bytes)
			side *= 2;
		{
			size_t n = (size_t)(3 * side * side);
			uint16_t *half = calloc(n, 2); /* F16 zeros: small host footprint */
			float t = 1;
			clunet_tensor in[2] = { { "sample", CLUNET_F16, 4, { 1, 3, side, side }, half, 0 },
						{ "timestep", CLUNET_F32, 0, { 0 }, &t, 0 } };
			clunet_plan_info info;
			st = clunet_model_plan(m, in, 2, &info);
			printf("  %-42s %s: %s\n", "activations larger than the device",
			       clunet_status_name(st), clunet_last_error());
			CHECK(st == CLUNET_ERR_DEVICE_MEMORY, "activation arena beyond the device: %s",
			      clunet_status_name(st));
			CHECK(strstr(clunet_last_error(), "activation arena") != NULL,
			      "the message names the activation arena");
			free(half);
		}
		clunet_model_free(m);
	}
	free(d);
}

int main(int argc, char **argv)
{
	clunet_context_options o;
	if (argc < 2) {
		printf("usage: test_errors FIXTURE_DIR (tests/data, holding " BASE ")\n");
		return 2;
	}
	fixtures = argv[1];
	tmp = tu_tempdir("errors");
	clunet_context_options_init(&o);
	o.log = tu_log;
	if (clunet_context_create(&o, &ctx) != CLUNET_OK) {
		printf("cannot create a context: %s\n", clunet_last_error());
		return 1;
	}
	printf("safetensors files:\n");
	test_safetensors();
	printf("weights against the config:\n");
	test_weights();
	printf("sharded weights:\n");
	test_sharded();
	printf("config.json:\n");
	test_config();
	printf("forward inputs:\n");
	test_inputs();
	printf("device memory:\n");
	test_device_memory();
	printf("UNet1DModel:\n");
	test_unet1d();
	printf("UNet2DConditionModel:\n");
	test_unet2dcond();
	printf("more:\n");
	test_fourier_names();
	test_output_lifetime();
	test_write_checks();
	test_deep_config();
	clunet_context_destroy(ctx);
	tu_rmtree(tmp);
	free(tmp);
	return tu_finish("errors");
}
