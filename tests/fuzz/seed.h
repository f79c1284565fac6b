/* SPDX-License-Identifier: MIT */
/*
 * What the fuzz harnesses' seed corpora share: writing one input to a file of the corpus
 * directory. Each harness builds its inputs in its own struct seed (a byte buffer b and its
 * length n, sized for its inputs); seed_write() takes any of them.
 */
#ifndef UIOMMU_TESTS_FUZZ_SEED_H
#define UIOMMU_TESTS_FUZZ_SEED_H

#include <stdio.h>
#include <stdlib.h>

/* Writes @n bytes at @b as @dir/@name; a corpus that cannot be written ends the program. */
static inline void seed_file_write(const char *dir, const char *name, const void *b, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(b, 1, n, f) != n || fclose(f)) {
		perror(path);
		exit(1);
	}
}

#define seed_write(dir, name, sd) seed_file_write((dir), (name), (sd)->b, (sd)->n)

#endif
