// The original article's design, kept as a baseline for dwell-bench-read: a Node.js Express app
// serving the custom metrics API over HTTPS, answering a fixed MetricValueList (res.json of an
// object, as the article's handler did). Loopback only; started and stopped by the bench.
'use strict';
const fs = require('fs');
const https = require('https');
const express = require('express');

const body = JSON.parse(fs.readFileSync(process.env.BODY_FILE, 'utf8'));
const app = express();
app.disable('x-powered-by');
app.disable('etag');

const answer = (req, res) => res.json(body);
app.get('/apis/custom.metrics.k8s.io/:version/namespaces/:namespace/:resource/:name/:metric', answer);
app.get('/apis/external.metrics.k8s.io/:version/namespaces/:namespace/:metric', answer);
app.use((req, res) => res.status(404).json({ kind: 'Status', code: 404 }));

const server = https.createServer(
  { key: fs.readFileSync(process.env.TLS_KEY), cert: fs.readFileSync(process.env.TLS_CERT) },
  app,
);
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  console.log(`node listening on ${a.address}:${a.port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
