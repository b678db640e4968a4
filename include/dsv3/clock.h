/* Monotonic wall clock for timings and progress. */
#ifndef DSV3_CLOCK_H
#define DSV3_CLOCK_H

/* Seconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
double dsv3_now_s(void);

/* Sorts v[0..n) ascending and returns its median (mean of the middle two for even n; 0 for n < 1):
 * for repeated timings. */
double dsv3_median(double *v, int n);

#endif
