/* Minimal test assertions. Every failed check prints file:line and makes the test exit 1
 * at the end (CHECK) or at once (REQUIRE). A test that ran no check at all also fails,
 * so an empty test cannot pass by accident. */
#ifndef BN_TEST_CHECK_H
#define BN_TEST_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_ = 0;
static int check_count_ = 0;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        check_count_++;                                                                       \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
            check_failures_++;                                                                \
        }                                                                                     \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                  \
    do {                                                                                      \
        check_count_++;                                                                       \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            check_failures_++;                                                                \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
    do {                                                                                      \
        long long a_ = (long long)(a), b_ = (long long)(b);                                   \
        check_count_++;                                                                       \
        if (a_ != b_) {                                                                       \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,     \
                    __LINE__, #a, a_, #b, b_);                                                \
            check_failures_++;                                                                \
        }                                                                                     \
    } while (0)

#define CHECK_STREQ(a, b)                                                                     \
    do {                                                                                      \
        const char *a_ = (a), *b_ = (b);                                                      \
        check_count_++;                                                                       \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                              \
            fprintf(stderr, "%s:%d: CHECK_STREQ failed: %s = \"%s\", %s = \"%s\"\n",          \
                    __FILE__, __LINE__, #a, a_ ? a_ : "(null)", #b, b_ ? b_ : "(null)");     \
            check_failures_++;                                                                \
        }                                                                                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                 \
    do {                                                                                      \
        double a_ = (double)(a), b_ = (double)(b);                                            \
        check_count_++;                                                                       \
        if (!(fabs(a_ - b_) <= (tol))) {                                                      \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g, tol %g\n",       \
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol));                       \
            check_failures_++;                                                                \
        }                                                                                     \
    } while (0)

#define REQUIRE(cond)                                                                         \
    do {                                                                                      \
        check_count_++;                                                                       \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Exit code 77 tells ctest the test was skipped (SKIP_RETURN_CODE); the reason is printed. */
#define SKIP(...)                                                                             \
    do {                                                                                      \
        printf("SKIP: ");                                                                     \
        printf(__VA_ARGS__);                                                                  \
        printf("\n");                                                                         \
        exit(77);                                                                             \
    } while (0)

static inline int check_report(const char *name) {
    if (check_count_ == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    if (check_failures_) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, check_failures_, check_count_);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, check_count_);
    return 0;
}
#endif
