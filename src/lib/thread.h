/* SPDX-License-Identifier: MIT */
/*
 * The library's threads start before anyone forks (lib/thread.c).
 *
 * Every thread the library makes is made with uiommu_thread_create(), which returns once the
 * new thread runs its own code, and no fork() of the process happens while one is starting.
 */
#ifndef UIOMMU_LIB_THREAD_H
#define UIOMMU_LIB_THREAD_H

#include <pthread.h>

/* pthread_create()'s arguments and answer (0 or a positive errno), returning once @fn runs. */
int uiommu_thread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *),
			 void *arg);

#endif
