/* A CUDA driver (libcuda.so.1) with no GPU behind it, for a CUDA build of torch on a machine without one.

   The CUDA runtime loads the driver and starts it with cuInit. A ZeroGPU Space's main process must never
   get that far: a driver started there breaks CUDA in every worker forked after it. This driver has no
   device, and appends "PID CALL" to the file named by FAKE_CUDA_DRIVER_LOG at each start, so a test can
   say which process reached the driver (and, to find the caller, aborts in the process whose id is in
   FAKE_CUDA_DRIVER_ABORT_PID). It exports only what the runtime needs to learn that there is no device:
   every other entry point is "not found". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(const char *call) {
    const char *path = getenv("FAKE_CUDA_DRIVER_LOG"), *stop = getenv("FAKE_CUDA_DRIVER_ABORT_PID");
    FILE *f = path ? fopen(path, "a") : NULL;
    if (f) {
        fprintf(f, "%d %s\n", (int)getpid(), call);
        fclose(f);
    }
    /* To find the caller: with PYTHONFAULTHANDLER=1, Python prints every thread's stack at the abort. */
    if (stop && atoi(stop) == (int)getpid()) abort();
}

int cuInit(unsigned int flags) {
    (void)flags;
    note("cuInit");
    return 100; /* CUDA_ERROR_NO_DEVICE */
}

int cuDriverGetVersion(int *version) {
    note("cuDriverGetVersion");
    if (version) *version = 13000;
    return 0;
}

int cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags, int *status) {
    void *found = NULL;
    (void)version;
    (void)flags;
    if (!strcmp(symbol, "cuInit")) found = (void *)cuInit;
    else if (!strcmp(symbol, "cuDriverGetVersion")) found = (void *)cuDriverGetVersion;
    else if (!strcmp(symbol, "cuGetProcAddress")) found = (void *)cuGetProcAddress_v2;
    if (pfn) *pfn = found;
    if (status) *status = found ? 1 : 2; /* CU_GET_PROC_ADDRESS_SUCCESS, _SYMBOL_NOT_FOUND */
    return found ? 0 : 500;              /* CUDA_ERROR_NOT_FOUND */
}

int cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags) {
    return cuGetProcAddress_v2(symbol, pfn, version, flags, NULL);
}
