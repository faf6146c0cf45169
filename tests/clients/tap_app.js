#!/usr/bin/env node
// A test-only AMQP app written with amqplib (npm), run by dwell's tap tests once against the
// broker and once through the sidecar's tap; the tests compare what it prints. It knows nothing
// of dwell. Same modes and output as tap_app.py (one JSON object per stdout line):
//   compare URL QA QB STAMP_MS | heartbeat URL Q | cancel URL Q | blocked URL Q | close URL NAME
'use strict';
const crypto = require('crypto');
const amqp = require('amqplib');

const SIZES = [0, 1, 17, 4096, 131072, 300000, 1 << 20, 5];
const FILLERS = 42;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function sorted(v) {
  if (Buffer.isBuffer(v)) return { bytes: v.toString('hex') };
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v).sort()) out[k] = sorted(v[k]);
    return out;
  }
  return v === undefined ? null : v;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(sorted(obj)) + '\n');
}

function messages(stampMs) {
  const sizes = SIZES.concat(Array.from({ length: FILLERS }, (_, i) => i % 7));
  return sizes.map((n, i) => {
    const body = Buffer.alloc(n);
    for (let b = 0; b < n; b++) body[b] = (b * 31 + i) % 256;
    const opts = {
      timestamp: Math.floor(stampMs / 1000),
      headers: { timestamp_in_ms: stampMs, note: `n${i}`, flag: i % 2 === 0, nested: { depth: i } },
      messageId: `m${i}`,
      deliveryMode: 2,
    };
    if (i % 2) {
      Object.assign(opts, {
        contentType: 'application/octet-stream', correlationId: `c${i}`, priority: 3,
        appId: 'tap-test', expiration: '600000',
      });
    }
    return [body, opts];
  });
}

function delivery(role, msg) {
  return {
    role, len: msg.content.length,
    sha256: crypto.createHash('sha256').update(msg.content).digest('hex'),
    props: msg.properties, redelivered: msg.fields.redelivered,
  };
}

async function compare(url, qa, qb, stampMs) {
  const conn = await amqp.connect(url);
  const chans = [];
  for (let i = 0; i < 50; i++) chans.push(await conn.createConfirmChannel());
  for (const q of [qa, qb]) await chans[0].assertQueue(q, { durable: false });
  const msgs = messages(Number(stampMs));
  for (let i = 0; i < msgs.length; i++) {
    const [body, opts] = msgs[i];
    for (const q of [qa, qb]) {
      const ch = chans[i % 50];
      ch.sendToQueue(q, body, opts);
      await ch.waitForConfirms();
    }
  }
  const consumer = await conn.createChannel();
  await consumer.prefetch(1);
  let n = 0;
  let tag = null;
  await new Promise((resolve, reject) => {
    let nacked = false;
    const timer = setTimeout(() => reject(new Error('no delivery within 20 s')), 20000);
    consumer.consume(qa, (msg) => {
      if (msg === null) return reject(new Error('consumer cancelled by the broker'));
      emit(delivery('consumed', msg));
      n += 1;
      if (!nacked) {
        nacked = true;
        consumer.nack(msg, false, true);
      } else {
        consumer.ack(msg);
      }
      if (n === msgs.length + 1) {
        clearTimeout(timer);
        resolve();
      }
    }).then((ok) => { tag = ok.consumerTag; }, reject);
  });
  await consumer.cancel(tag);
  const getter = await conn.createChannel();
  for (;;) {
    const msg = await getter.get(qb);
    if (!msg) break;
    emit(delivery('got', msg));
    getter.ack(msg);
    n += 1;
  }
  for (const q of [qa, qb]) await getter.deleteQueue(q);
  await conn.close();
  emit({ done: n });
}

async function heartbeat(url, q) {
  const conn = await amqp.connect(url + '?heartbeat=2');
  const ch = await conn.createChannel();
  await ch.assertQueue(q, { durable: false });
  await sleep(10000);
  ch.sendToQueue(q, Buffer.from('after idle'));
  let msg = false;
  for (let i = 0; i < 50 && !msg; i++) {
    msg = await ch.get(q, { noAck: true });
    if (!msg) await sleep(100);
  }
  await ch.deleteQueue(q);
  await conn.close();
  emit({ alive: !!msg && msg.content.toString() === 'after idle' });
}

async function cancel(url, q) {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertQueue(q, { durable: false });
  let cancelled = false;
  await ch.consume(q, (msg) => { if (msg === null) cancelled = true; });
  const other = await conn.createChannel();
  await other.deleteQueue(q);
  for (let i = 0; i < 100 && !cancelled; i++) await sleep(100);
  emit({ cancelled });
  await conn.close();
}

async function blocked(url, q) {
  const conn = await amqp.connect(url);
  const state = { blocked: false, unblocked: false };
  conn.on('blocked', () => { state.blocked = true; });
  conn.on('unblocked', () => { state.unblocked = true; });
  const ch = await conn.createChannel();
  await ch.assertQueue(q, { autoDelete: true, durable: false });
  emit({ ready: true });
  const deadline = Date.now() + 30000;
  while (!state.blocked && Date.now() < deadline) {
    ch.sendToQueue(q, Buffer.from('x'));
    await sleep(100);
  }
  emit({ blocked: state.blocked });
  while (!state.unblocked && Date.now() < deadline) await sleep(100);
  emit({ unblocked: state.unblocked });
  await ch.deleteQueue(q);
  await conn.close();
}

async function close(url, name) {
  const conn = await amqp.connect(url, { clientProperties: { connection_name: name } });
  conn.on('error', () => {});
  const closed = new Promise((resolve) => conn.on('close', (err) => resolve(err)));
  emit({ ready: true });
  const err = await Promise.race([closed, sleep(30000).then(() => 'timeout')]);
  if (err === 'timeout') {
    emit({ closed_at_ms: null });
  } else {
    emit({ closed_at_ms: Date.now(), reply_code: err && err.code ? err.code : null });
  }
}

const [mode, ...args] = process.argv.slice(2);
const modes = { compare, heartbeat, cancel, blocked, close };
modes[mode](...args).then(
  () => process.exit(0),
  (e) => { console.error(e); process.exit(1); },
);
