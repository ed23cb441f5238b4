/*
 * libFuzzer harness for the config parser: any text either parses or gives
 * FILE:LINE errors; never a crash, a leak or a silent truncation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *errors = NULL;
	struct config *cf;

	cf = config_parse((const char *)data, size, "fuzz.ini", &errors);
	if (cf == NULL && (errors == NULL || strncmp(errors, "fuzz.ini:", 9) != 0))
		abort();	/* a refusal must say where */
	config_unref(cf);
	free(errors);
	return 0;
}
