/* Monotonic wall clock for timings and progress. */
#ifndef DSV3_CLOCK_H
#define DSV3_CLOCK_H

/* Seconds from an arbitrary fixed point (CLOCK_MONOTONIC). */
double dsv3_now_s(void);

#endif
