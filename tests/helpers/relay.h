/*
 * A TCP relay inside the test process, between a client (a replica) and a
 * server (its primary), that the test can stall, slow down and cut: what a
 * network in trouble does to a replication link. Listens on a free
 * 127.0.0.1 port; forwards to 127.0.0.1:target.
 */
#ifndef MCDB_TEST_RELAY_H
#define MCDB_TEST_RELAY_H

#include <stddef.h>
#include <stdint.h>

struct th_relay;

struct th_relay *th_relay_start(int target_port);
int th_relay_port(const struct th_relay *r);
/* Stop forwarding in both directions (bytes wait in the kernel's buffers)
 * until called again with 0. */
void th_relay_stall(struct th_relay *r, int on);
/* Forward at most this many bytes a second towards the client (0: no
 * limit). */
void th_relay_rate(struct th_relay *r, uint64_t bytes_per_sec);
/* Close every connection through the relay now; with refuse set, also
 * close new ones at once until called with 0. */
void th_relay_drop(struct th_relay *r, int refuse);
/* Bytes forwarded towards the client so far. */
uint64_t th_relay_bytes(const struct th_relay *r);
void th_relay_stop(struct th_relay *r);

#endif
