'use strict';
// An independent SMSC peer built on the npm `smpp` package, for Switchboard's integration tests.
// It listens on 127.0.0.1 only, checks bind credentials, answers submit_sm with ids (or
// ESME_RTHROTTLED for a share of them), sends delivery receipts with both TLVs and Appendix B
// text, and writes every received PDU as one JSON line (to --log FILE, else stdout).
// The first stdout line is `LISTENING <port>` once it accepts connections.
//
//   node server.js --port 0 --system-id esme1 --password pw --log pdus.jsonl
//     [--throttle-share 0.5] [--seed 1] [--receipt-delay-ms 0] [--dlr-stat DELIVRD]
//     [--dlr-mode both|tlv|text|none] [--dates-with-seconds] [--reject-status 14]

const fs = require('fs');
const smpp = require('smpp');
const PDU = require('smpp/lib/pdu').PDU;
const defs = require('smpp/lib/defs');

function parseArgs(argv) {
  const options = {
    host: '127.0.0.1',
    port: 2775,
    systemId: 'esme1',
    password: 'pw',
    log: null,
    throttleShare: 0,
    seed: 1,
    receiptDelayMs: 0,
    dlrStat: 'DELIVRD',
    dlrMode: 'both',
    datesWithSeconds: false,
    rejectStatus: smpp.ESME_RBINDFAIL,
  };
  for (let i = 2; i < argv.length; i++) {
    const key = argv[i];
    const next = () => argv[++i];
    switch (key) {
      case '--port': options.port = Number(next()); break;
      case '--system-id': options.systemId = next(); break;
      case '--password': options.password = next(); break;
      case '--log': options.log = next(); break;
      case '--throttle-share': options.throttleShare = Number(next()); break;
      case '--seed': options.seed = Number(next()); break;
      case '--receipt-delay-ms': options.receiptDelayMs = Number(next()); break;
      case '--dlr-stat': options.dlrStat = next(); break;
      case '--dlr-mode': options.dlrMode = next(); break;
      case '--dates-with-seconds': options.datesWithSeconds = true; break;
      case '--reject-status': options.rejectStatus = Number(next()); break;
      default: throw new Error('unknown option ' + key);
    }
  }
  return options;
}

const options = parseArgs(process.argv);

// mulberry32: a seeded PRNG so a throttling share is reproducible.
let seed = options.seed >>> 0;
function random() {
  seed = (seed + 0x6D2B79F5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const logStream = options.log ? fs.createWriteStream(options.log, { flags: 'a' }) : process.stdout;
function record(entry) {
  logStream.write(JSON.stringify(entry) + '\n');
}

// Keep the raw octets of short_message / message_payload before the library decodes them,
// so the log shows exactly what went on the wire.
const originalFilter = PDU.prototype._filter;
PDU.prototype._filter = function (func) {
  if (func === 'decode') {
    if (Buffer.isBuffer(this.short_message)) this._raw_short_message = Buffer.from(this.short_message);
    if (Buffer.isBuffer(this.message_payload)) this._raw_message_payload = Buffer.from(this.message_payload);
    if (typeof this.validity_period === 'string') this._raw_validity_period = this.validity_period;
  }
  return originalFilter.call(this, func);
};

function hex(value) {
  return Buffer.isBuffer(value) ? value.toString('hex') : value;
}

function tlvsOf(pdu) {
  const params = (defs.commands[pdu.command] || {}).params || {};
  const out = {};
  for (const key of Object.keys(pdu)) {
    if (key in params || key.startsWith('_')) continue;
    if (/^\d+$/.test(key)) {
      out['0x' + Number(key).toString(16).padStart(4, '0')] = hex(pdu[key]);
    } else if (key in defs.tlvs) {
      const id = '0x' + defs.tlvs[key].id.toString(16).padStart(4, '0');
      const value = key === 'message_payload' ? pdu._raw_message_payload : pdu[key];
      out[id] = hex(value);
    }
  }
  return out;
}

function describeSubmit(pdu, answer) {
  const sm = pdu.short_message || {};
  return {
    command: 'submit_sm',
    sequence_number: pdu.sequence_number,
    service_type: pdu.service_type,
    source_addr_ton: pdu.source_addr_ton,
    source_addr_npi: pdu.source_addr_npi,
    source_addr: pdu.source_addr,
    dest_addr_ton: pdu.dest_addr_ton,
    dest_addr_npi: pdu.dest_addr_npi,
    destination_addr: pdu.destination_addr,
    esm_class: pdu.esm_class,
    registered_delivery: pdu.registered_delivery,
    data_coding: pdu.data_coding,
    validity_period: pdu._raw_validity_period || '',
    short_message_hex: hex(pdu._raw_short_message || Buffer.alloc(0)),
    udh: (sm.udh || []).map(hex),
    message: typeof sm.message === 'string' ? sm.message : null,
    tlvs: tlvsOf(pdu),
    command_status: answer.command_status,
    message_id: answer.message_id || null,
  };
}

// Long messages: reassemble UDH (IEI 0x00 / 0x08) and SAR parts and log the whole text.
const longMessages = new Map();
function collectLong(pdu) {
  const sm = pdu.short_message || {};
  let ref = null, total = 0, part = 0;
  for (const udh of sm.udh || []) {
    if (udh[0] === 0x00 && udh[1] === 3) { ref = udh[2]; total = udh[3]; part = udh[4]; }
    if (udh[0] === 0x08 && udh[1] === 4) { ref = udh.readUInt16BE(2); total = udh[4]; part = udh[5]; }
  }
  if (ref === null && pdu.sar_msg_ref_num !== undefined) {
    ref = pdu.sar_msg_ref_num; total = pdu.sar_total_segments; part = pdu.sar_segment_seqnum;
  }
  if (ref === null || !total) return;
  const key = [pdu.source_addr, pdu.destination_addr, ref, total].join('/');
  const entry = longMessages.get(key) || { parts: {} };
  entry.parts[part] = typeof sm.message === 'string' ? sm.message : '';
  longMessages.set(key, entry);
  if (Object.keys(entry.parts).length === total) {
    longMessages.delete(key);
    let text = '';
    for (let i = 1; i <= total; i++) text += entry.parts[i];
    record({ command: 'long_message', reference: ref, total: total, destination_addr: pdu.destination_addr, text: text });
  }
}

const MESSAGE_STATES = { DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 };
let nextId = 7000000;

function stamp() {
  const d = new Date();
  const two = (n) => String(n).padStart(2, '0');
  let s = two(d.getUTCFullYear() % 100) + two(d.getUTCMonth() + 1) + two(d.getUTCDate()) +
    two(d.getUTCHours()) + two(d.getUTCMinutes());
  if (options.datesWithSeconds) s += two(d.getUTCSeconds());
  return s;
}

function sendReceipt(session, submit, messageId) {
  const stat = options.dlrStat;
  const receipt = {
    source_addr_ton: submit.dest_addr_ton,
    source_addr_npi: submit.dest_addr_npi,
    source_addr: submit.destination_addr,
    dest_addr_ton: submit.source_addr_ton,
    dest_addr_npi: submit.source_addr_npi,
    destination_addr: submit.source_addr,
    esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
  };
  if (options.dlrMode === 'both' || options.dlrMode === 'tlv') {
    receipt.receipted_message_id = messageId;
    receipt.message_state = MESSAGE_STATES[stat] || 7;
  }
  if (options.dlrMode === 'both' || options.dlrMode === 'text') {
    const dlvrd = stat === 'DELIVRD' ? '001' : '000';
    const text = `id:${messageId} sub:001 dlvrd:${dlvrd} submit date:${stamp()} done date:${stamp()} ` +
      `stat:${stat} err:${stat === 'DELIVRD' ? '000' : '001'} text:`;
    receipt.short_message = Buffer.from(text, 'ascii');  // a Buffer is sent as is, not GSM-encoded
  }
  session.deliver_sm(receipt, (resp) => {
    record({ command: 'deliver_sm_resp', receipted_message_id: messageId, command_status: resp.command_status });
  });
}

const server = smpp.createServer({}, (session) => {
  let bound = null;
  session.on('error', () => {});
  const bind = (kind) => (pdu) => {
    session.pause();
    const ok = pdu.system_id === options.systemId && pdu.password === options.password;
    record({ command: kind, system_id: pdu.system_id, accepted: ok });
    if (!ok) {
      session.send(pdu.response({ command_status: options.rejectStatus }));
      session.close();
      return;
    }
    bound = kind;
    session.send(pdu.response({ system_id: 'NPMSMSC' }));
    session.resume();
  };
  session.on('bind_transceiver', bind('bind_transceiver'));
  session.on('bind_transmitter', bind('bind_transmitter'));
  session.on('bind_receiver', bind('bind_receiver'));
  session.on('enquire_link', (pdu) => {
    record({ command: 'enquire_link' });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    record({ command: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
  session.on('unknown', (pdu) => {
    record({ command: 'unknown', command_id: pdu.command_id });
    session.send(pdu.response());
  });
  session.on('submit_sm', (pdu) => {
    if (!bound || bound === 'bind_receiver') {
      const answer = { command_status: smpp.ESME_RINVBNDSTS };
      record(describeSubmit(pdu, answer));
      session.send(pdu.response(answer));
      return;
    }
    if (options.throttleShare > 0 && random() < options.throttleShare) {
      const answer = { command_status: smpp.ESME_RTHROTTLED };
      record(describeSubmit(pdu, answer));
      session.send(pdu.response(answer));
      return;
    }
    const messageId = 'N' + (nextId++);
    const answer = { command_status: 0, message_id: messageId };
    record(describeSubmit(pdu, answer));
    collectLong(pdu);
    session.send(pdu.response({ message_id: messageId }));
    if ((pdu.registered_delivery & 0x03) && options.dlrMode !== 'none') {
      setTimeout(() => sendReceipt(session, pdu, messageId), options.receiptDelayMs);
    }
  });
});

server.listen(options.port, options.host, () => {
  process.stdout.write('LISTENING ' + server.address().port + '\n');
});

function shutdown() {
  server.close();
  for (const session of server.sessions.slice()) session.destroy();
  if (logStream !== process.stdout) logStream.end(() => process.exit(0));
  else process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
