/* LD_PRELOAD shim for tests/agent/test_history_lock.py: holds a process between DuckDB's
   unlocked read of a database file's header and its fcntl(F_SETLK) lock on that file, the
   window in which DuckDB 2.0.1 loses another process's committed transaction.

   Acts only while the file named by $SHIM_FLAG exists and only on files whose name ends in
   ".duckdb". $SHIM_MARK: a file that gets a line each time a process starts waiting.
   $SHIM_DELAY_MS: a fixed delay; $SHIM_RANDOM_MS: a random delay from 0 to N ms instead. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int names_a_database(int fd) {
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 7) return 0;
    target[n] = '\0';
    return strcmp(target + n - 7, ".duckdb") == 0;
}

static long delay_us(void) {
    const char *spread = getenv("SHIM_RANDOM_MS");
    if (spread) {
        static int seeded = 0;
        if (!seeded) { srandom((unsigned)(getpid() ^ time(NULL))); seeded = 1; }
        return random() % (atol(spread) * 1000 + 1);
    }
    const char *fixed = getenv("SHIM_DELAY_MS");
    return 1000L * (fixed ? atol(fixed) : 1000);
}

int fcntl(int fd, int cmd, ...) {
    static int (*real_fcntl)(int, int, ...) = NULL;
    if (!real_fcntl) real_fcntl = (int (*)(int, int, ...))dlsym(RTLD_NEXT, "fcntl");
    va_list args;
    va_start(args, cmd);
    void *arg = va_arg(args, void *);
    va_end(args);
    const char *flag = getenv("SHIM_FLAG");
    if (cmd == F_SETLK && flag && access(flag, F_OK) == 0 && names_a_database(fd)) {
        const char *mark = getenv("SHIM_MARK");
        if (mark) {
            FILE *out = fopen(mark, "a");
            if (out) { fprintf(out, "%d\n", (int)getpid()); fclose(out); }
        }
        usleep(delay_us());
    }
    return real_fcntl(fd, cmd, arg);
}
