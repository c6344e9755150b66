// MQTT.js round trip for the integration tests: connect to the URL in
// argv[2] (ws://, wss://, mqtts://; LMQ_CA/LMQ_CERT/LMQ_KEY name PEM files
// for TLS), subscribe to js/<scheme>, publish a QoS 1 message there, wait for
// it, disconnect. Prints "ok" and exits 0; 1 on an error, 2 on a timeout.
'use strict';
const fs = require('fs');
const mqtt = require('mqtt');

const url = process.argv[2];
const scheme = url.split(':')[0];
const topic = 'js/' + scheme;
const opts = {
  protocolVersion: 4,
  clientId: 'mqttjs-' + scheme + '-' + process.pid,
  reconnectPeriod: 0,
  connectTimeout: 8000,
};
if (process.env.LMQ_CA) {
  opts.ca = fs.readFileSync(process.env.LMQ_CA);
  opts.rejectUnauthorized = true;
}
if (process.env.LMQ_CERT) {
  opts.cert = fs.readFileSync(process.env.LMQ_CERT);
  opts.key = fs.readFileSync(process.env.LMQ_KEY);
}
const timer = setTimeout(() => {
  console.log('timeout');
  process.exit(2);
}, 15000);
const payload = Buffer.alloc(70000, 7);  // several WebSocket/TLS records
const client = mqtt.connect(url, opts);
client.on('error', (e) => {
  console.log('error: ' + e.message);
  process.exit(1);
});
client.on('close', () => {
  if (!client.done) {
    console.log('closed before the round trip');
    process.exit(1);
  }
});
client.on('connect', () => {
  client.subscribe(topic, { qos: 1 }, (err) => {
    if (err) {
      console.log('subscribe: ' + err.message);
      process.exit(1);
    }
    client.publish(topic, payload, { qos: 1 });
  });
});
client.on('message', (t, m) => {
  if (t === topic && m.equals(payload)) {
    client.done = true;
    clearTimeout(timer);
    client.end(false, () => {
      console.log('ok');
      process.exit(0);
    });
  }
});
