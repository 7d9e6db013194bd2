/* Eight threads call the module at once: training runs, successful and
 * failing lookups and strings, each checking its own results and errors.
 * no-valgrind: valgrind serialises the threads, the point here is overlap. */
#include "threads.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define THREADS 8
#define ROUNDS 200

static dl_array *x, *y; /* shared, read by every thread */

static void *work(void *arg)
{
    long id = (long)arg;
    long bad = 0;
    char want[64], prefix[32];
    snprintf(prefix, sizeof prefix, "thread %ld: ", id);
    for (int r = 0; r < ROUNDS; r++) {
        dl_array *w;
        if (threads_fit(x, y, 50 + (int)id, &w) != 0) {
            bad++;
            continue;
        }
        double *wv = w->data;
        /* y = 2 x0 - x1: gradient descent approaches (2, -1) */
        if (fabs(wv[0] - 2.0) > 0.2 || fabs(wv[1] + 1.0) > 0.2)
            bad++;
        double v;
        int i = (int)((id + r) % 6); /* i == 3: index 7, out of bounds */
        int st = threads_pick(w, i == 3 ? 7 : i % 2, &v);
        if (i == 3) {
            if (st != 1 || !strstr(dl_last_error(), "index 7 out of bounds"))
                bad++;
        } else if (st != 0 || v != wv[i % 2]) {
            bad++;
        }
        const char *s;
        if (threads_tag(prefix, r, &s) != 0) {
            bad++;
        } else {
            snprintf(want, sizeof want, "%s%d", prefix, r);
            if (strcmp(s, want) != 0)
                bad++;
            threads_tag_release(&s);
        }
        dl_array_release(w);
    }
    return (void *)bad;
}

int main(void)
{
    int64_t shape[2] = {4, 2};
    double xv[] = {1, 0, 0, 1, 1, 1, 2, 1};
    double yv[] = {2, -1, 1, 3};
    x = dl_array_from_data(DL_F64, 2, shape, xv);
    y = dl_array_from_data(DL_F64, 1, shape, yv);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, work, (void *)i);
    long bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    printf("%d threads x %d rounds, %ld bad results\n", THREADS, ROUNDS, bad);
    printf("shared arrays intact: refcounts %lld %lld\n", (long long)x->refcount, (long long)y->refcount);
    dl_array_release(x);
    dl_array_release(y);
    return bad != 0;
}
// expect: 8 threads x 200 rounds, 0 bad results
// expect: shared arrays intact: refcounts 1 1
