#!/usr/bin/env node
// memjs (npm, pinned in package-lock.json), a real client that speaks only
// memcached's binary protocol, against a running server:
//
//   npm ci --prefix tests/js
//   node tests/js/memjs_test.js --server 127.0.0.1:11211 --pid PID
//   node tests/js/memjs_test.js --server 127.0.0.1:11211 --pid PID \
//       --user alice --password secret
//
// ctest runs it as net/memjs (tests/net/test_memjs.c starts the server and
// stops it). Every command the issue names: set, get, add, replace, delete,
// incr, decr, append, prepend, touch, flush, stats; and, with --user and
// --password (the server started with those credentials), SASL PLAIN login:
// the right password works, a wrong one and none at all fail with memjs's
// authentication error.
//
// Prints "ok - NAME" or "not ok - NAME: why" per check and then
// "N passed, N failed". Exit status: 0 all passed, 1 a check failed,
// 2 bad arguments, 77 memjs is not installed (skip).
'use strict';

const { parseArgs } = require('node:util');
const path = require('node:path');

let memjs;
try {
  memjs = require(path.join(__dirname, 'node_modules', 'memjs'));
} catch (e) {
  console.error('SKIP: memjs is not installed in tests/js/node_modules ' +
                '(npm ci --prefix tests/js; scripts/deps.sh need_npm does it): ' +
                e.message);
  process.exit(77);
}

let args;
try {
  args = parseArgs({
    options: {
      server: { type: 'string' },
      pid: { type: 'string' },
      user: { type: 'string' },
      password: { type: 'string' },
    },
  }).values;
} catch (e) {
  console.error('memjs_test: ' + e.message);
  process.exit(2);
}
if (!args.server || !/^127\.0\.0\.1:\d+$/.test(args.server) ||
    (args.user === undefined) !== (args.password === undefined)) {
  console.error('usage: memjs_test.js --server 127.0.0.1:PORT [--pid PID] ' +
                '[--user USER --password PASSWORD]');
  process.exit(2);
}

// memjs logs failed operations on the console; keep them for the report.
const logged = [];
const logger = { log: (...m) => logged.push(m.join(' ')) };

// Generous timeouts: the server may run under ASan on a busy machine.
// Credentials go in the options, not in "user:password@host", which memjs
// splits at every ':'.
function client(user, password) {
  return memjs.Client.create(args.server, {
    timeout: 5, conntimeout: 10, retries: 1, logger: logger,
    username: user, password: password,
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function eq(got, want, what) {
  const g = Buffer.isBuffer(got) ? got.toString('latin1') : got;
  const w = Buffer.isBuffer(want) ? want.toString('latin1') : want;
  if (g !== w)
    throw new Error(what + ': got ' + JSON.stringify(g) + ', expected ' +
                    JSON.stringify(w));
}

// memjs's own request builder and dispatcher, for a command it has no
// method for; resolves to the parsed response (header, extras, key, val).
function raw(c, opcode, key, extras, value) {
  c.incrSeq();
  const req = memjs.Utils.makeRequestBuffer(opcode, key, extras, value, c.seq);
  return new Promise((resolve, reject) => {
    c.perform(key, req, c.seq, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

// memjs's stats() answers once per server through a callback.
function stats(c) {
  return new Promise((resolve, reject) => {
    c.stats((err, server, st) => (err ? reject(err) : resolve(st)));
  });
}

// Run fn; a promise of memjs that never settles is a failure, not a hang.
function bounded(p, ms, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(what + ': no answer in ' + ms +
                                            ' ms')), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// memjs's error for a status other than success and Key not found.
async function fails(p, pattern, what) {
  let err = null;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  if (!err || !pattern.test(err.message))
    throw new Error(what + ': expected memjs\'s error matching ' + pattern +
                    ', got ' + (err ? err.message : 'success'));
}

const prefix = 'memjs:' + process.pid + ':';
const k = (name) => prefix + name;
const checks = [];
const check = (name, fn) => checks.push({ name, fn });

check('set_then_get_returns_the_value_and_zero_flags', async (c) => {
  eq(await c.set(k('a'), 'alpha'), true, 'set');
  const r = await c.get(k('a'));
  eq(r.value, 'alpha', 'value');
  eq(r.flags.toString('hex'), '00000000', 'flags');
});

check('get_of_a_missing_key_is_null_not_an_error', async (c) => {
  const r = await c.get(k('never-set'));
  eq(r.value, null, 'value');
});

check('binary_values_of_every_byte_and_100_kb_round_trip', async (c) => {
  const every = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) every[i] = i;
  const big = Buffer.alloc(100 * 1024, 'mcdb\r\n\0');
  eq(await c.set(k('bytes'), every), true, 'set bytes');
  eq(await c.set(k('big'), big), true, 'set big');
  eq((await c.get(k('bytes'))).value.equals(every), true, 'every byte value');
  eq((await c.get(k('big'))).value.equals(big), true, '100 KiB value');
});

check('a_hundred_requests_in_flight_on_one_connection_answer_in_order',
      async (c) => {
  const n = 100;
  const sets = [];
  for (let i = 0; i < n; i++) sets.push(c.set(k('p' + i), 'v' + i));
  eq((await Promise.all(sets)).every((x) => x === true), true, 'all stored');
  const gets = [];
  for (let i = 0; i < n; i++) gets.push(c.get(k('p' + i)));
  const got = await Promise.all(gets);
  for (let i = 0; i < n; i++) eq(got[i].value, 'v' + i, 'p' + i);
});

check('add_stores_only_a_missing_key', async (c) => {
  eq(await c.add(k('add'), 'first'), true, 'add of a missing key');
  eq(await c.add(k('add'), 'second'), false, 'add of an existing key');
  eq((await c.get(k('add'))).value, 'first', 'value after both adds');
});

check('replace_stores_only_an_existing_key', async (c) => {
  eq(await c.replace(k('repl'), 'x'), false, 'replace of a missing key');
  eq((await c.get(k('repl'))).value, null, 'missing key after replace');
  await c.set(k('repl'), 'old');
  eq(await c.replace(k('repl'), 'new'), true, 'replace of an existing key');
  eq((await c.get(k('repl'))).value, 'new', 'value after replace');
});

check('delete_removes_a_key_and_reports_a_missing_one', async (c) => {
  await c.set(k('del'), 'gone soon');
  eq(await c.delete(k('del')), true, 'delete of an existing key');
  eq((await c.get(k('del'))).value, null, 'value after delete');
  eq(await c.delete(k('del')), false, 'delete of a missing key');
});

check('incr_creates_with_initial_then_adds_and_decr_stops_at_zero',
      async (c) => {
  let r = await c.increment(k('ctr'), 5, { initial: 10 });
  eq(r.success, true, 'incr of a missing key');
  eq(r.value, 10, 'incr of a missing key gives the initial value');
  r = await c.increment(k('ctr'), 5);
  eq(r.value, 15, 'incr by 5');
  r = await c.decrement(k('ctr'), 4, {});
  eq(r.value, 11, 'decr by 4');
  r = await c.decrement(k('ctr'), 100, {});
  eq(r.value, 0, 'decr below zero');
  // memcached keeps a shrinking counter's length, padded with spaces
  eq((await c.get(k('ctr'))).value.toString().trimEnd(), '0',
     'the counter read by get');
  r = await c.decrement(k('dctr'), 1, { initial: 7 });
  eq(r.value, 7, 'decr of a missing key gives the initial value');
});

check('incr_of_a_non_numeric_value_is_an_error', async (c) => {
  await c.set(k('word'), 'abc');
  await fails(c.increment(k('word'), 1), /non-numeric/, 'incr of "abc"');
  eq((await c.get(k('word'))).value, 'abc', 'value left as it was');
});

check('append_adds_to_the_end_of_an_existing_value_only', async (c) => {
  await fails(c.append(k('app'), 'x'), /Item not stored/,
              'append to a missing key');
  eq((await c.get(k('app'))).value, null, 'missing key after append');
  await c.set(k('app'), 'abc');
  eq(await c.append(k('app'), 'def'), true, 'append');
  eq((await c.get(k('app'))).value, 'abcdef', 'value after append');
});

check('prepend_adds_to_the_front_of_an_existing_value_only', async (c) => {
  // memjs 1.3.2's prepend() sends APPEND (opcode 0x0e), a bug of the
  // client: this check sends PREPEND (0x0f) through memjs's own request
  // builder, and prepend() itself must still report success and a miss.
  let r = await raw(c, 0x0f, k('pre'), '', 'x');
  eq(r.header.status, 5, 'PREPEND to a missing key: status Item not stored');
  await c.set(k('pre'), 'def');
  r = await raw(c, 0x0f, k('pre'), '', 'abc');
  eq(r.header.status, 0, 'PREPEND status');
  eq((await c.get(k('pre'))).value, 'abcdef', 'value after PREPEND');
  eq(await c.prepend(k('pre'), 'g'), true, 'memjs prepend() of a present key');
  await fails(c.prepend(k('pre-missing'), 'g'), /Item not stored/,
              'memjs prepend() of a missing key');
});

check('touch_sets_a_new_expiry_and_reports_a_missing_key', async (c) => {
  eq(await c.touch(k('never-touched'), 100), false, 'touch of a missing key');
  await c.set(k('t-keep'), 'stays');
  await c.set(k('t-go'), 'goes', { expires: 0 });
  eq(await c.touch(k('t-keep'), 3600), true, 'touch to an hour');
  eq(await c.touch(k('t-go'), 1), true, 'touch to one second');
  eq((await c.get(k('t-go'))).value, 'goes', 'right after touch');
  // expiry has a one-second clock: 2.2 s is past it on any server
  await sleep(2200);
  eq((await c.get(k('t-go'))).value, null, 'touched to 1 s, 2.2 s later');
  eq((await c.get(k('t-keep'))).value, 'stays', 'touched to an hour');
});

check('set_with_expires_is_gone_after_it', async (c) => {
  await c.set(k('exp'), 'short', { expires: 1 });
  eq((await c.get(k('exp'))).value, 'short', 'right after set');
  await sleep(2200);
  eq((await c.get(k('exp'))).value, null, 'expires 1, 2.2 s later');
});

check('stats_names_this_server_and_counts_the_gets', async (c) => {
  const st = await stats(c);
  for (const name of ['pid', 'uptime', 'version', 'curr_connections',
                      'cmd_get', 'cmd_set', 'get_hits', 'curr_items'])
    if (!(name in st)) throw new Error('stats has no ' + name);
  if (args.pid !== undefined) eq(st.pid, args.pid, 'stats pid');
  if (!/^\d+$/.test(st.cmd_get) || Number(st.cmd_get) < 100)
    throw new Error('cmd_get ' + st.cmd_get + ': expected 100 or more ' +
                    '(this run\'s gets)');
});

check('flush_empties_the_server', async (c) => {
  await c.set(k('f1'), 'one');
  await c.set(k('f2'), 'two');
  const r = await c.flush();
  eq(r[args.server], true, 'flush result for ' + args.server);
  eq((await c.get(k('f1'))).value, null, 'f1 after flush');
  eq((await c.get(k('f2'))).value, null, 'f2 after flush');
  eq(await c.set(k('f3'), 'after'), true, 'set after flush');
  eq((await c.get(k('f3'))).value, 'after', 'a set after the flush stays');
});

// With credentials: the server was started with them (mcdbd --auth-file,
// memcached -S with a SASL password file).
async function authFails(c, what) {
  let err = null;
  try {
    await c.get(k('a'));
  } catch (e) {
    err = e;
  }
  const msg = err === null ? 'success' : String(err.message || err);
  if (!/authentication failed|Authentication error/i.test(msg))
    throw new Error(what + ': expected memjs\'s authentication error, got ' +
                    msg);
}

if (args.user !== undefined) {
  check('sasl_plain_login_with_the_right_password_can_set_and_get',
        async (c) => {
    eq(await c.set(k('auth'), 'in'), true, 'set');
    eq((await c.get(k('auth'))).value, 'in', 'get');
  });
  check('sasl_plain_login_with_a_wrong_password_fails_with_an_auth_error',
        async () => {
    const bad = client(args.user, args.password + 'x');
    try {
      await authFails(bad, 'wrong password');
    } finally {
      bad.close();
    }
  });
  check('without_credentials_commands_fail_with_an_auth_error', async () => {
    const none = client();
    try {
      await authFails(none, 'no login');
    } finally {
      none.close();
    }
  });
}

async function main() {
  const c = client(args.user, args.password);
  let passed = 0;
  let failed = 0;
  for (const { name, fn } of checks) {
    const before = logged.length;
    try {
      await bounded(fn(c), 30000, name);
      console.log('ok - ' + name);
      passed++;
    } catch (e) {
      const why = e && e.message ? e.message : String(e);
      console.log('not ok - ' + name + ': ' + why);
      // the first few lines memjs logged meanwhile (a failed login makes many)
      for (const line of logged.slice(before, before + 3))
        console.log('  memjs: ' + line);
      failed++;
      // a server that does not answer at all would make every check wait
      // out its timeouts: stop after the first such failure
      if (/timed out|no answer in|ECONNREFUSED|ECONNRESET/.test(why)) {
        const left = checks.length - passed - failed;
        console.log('bail out: the server did not answer; ' + left +
                    ' checks not run (counted as failed)');
        failed += left;
        break;
      }
    }
  }
  c.close();
  console.log(passed + ' passed, ' + failed + ' failed');
  process.exit(failed ? 1 : 0);
}

main();
