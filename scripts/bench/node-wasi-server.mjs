// node-wasi-server.mjs is the V8 peer of the gateway benchmark: a minimal
// Node.js HTTP server that runs a WASI (preview 1) module CGI-style, like
// aegis does. The module is compiled once; every request gets a fresh
// instance with the CGI variables as its environment, the request body on
// stdin and its stdout parsed as a CGI response.
//
// Usage: node node-wasi-server.mjs MODULE.wasm PORT
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { WASI } from 'node:wasi';

const [modulePath, port] = process.argv.slice(2);
const module = await WebAssembly.compile(readFileSync(modulePath));

function cgiEnv(req, body) {
  const url = new URL(req.url, 'http://localhost');
  const env = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_PROTOCOL: 'HTTP/' + req.httpVersion,
    SERVER_SOFTWARE: 'node-wasi-peer',
    REQUEST_METHOD: req.method,
    SCRIPT_NAME: '',
    PATH_INFO: url.pathname,
    QUERY_STRING: url.search.slice(1),
    CONTENT_LENGTH: String(body.length),
    REMOTE_ADDR: req.socket.remoteAddress ?? '',
  };
  if (req.headers['content-type']) env.CONTENT_TYPE = req.headers['content-type'];
  for (const [k, v] of Object.entries(req.headers)) {
    if (k === 'content-type' || k === 'content-length') continue;
    env['HTTP_' + k.toUpperCase().replaceAll('-', '_')] = Array.isArray(v) ? v.join(', ') : v;
  }
  return env;
}

// run instantiates the module and calls _start, with fd_read on stdin and
// fd_write on stdout/stderr served from memory instead of real descriptors.
function run(env, body) {
  const wasi = new WASI({ version: 'preview1', env, args: ['fn'], returnOnExit: true });
  const imports = wasi.getImportObject();
  const w = imports.wasi_snapshot_preview1;
  const out = [];
  let memory;
  let stdinPos = 0;
  const iovecs = (ptr, len) => {
    const view = new DataView(memory.buffer);
    const list = [];
    for (let i = 0; i < len; i++) {
      list.push([view.getUint32(ptr + i * 8, true), view.getUint32(ptr + i * 8 + 4, true)]);
    }
    return list;
  };
  const fdWrite = w.fd_write, fdRead = w.fd_read;
  w.fd_write = (fd, iovs, iovsLen, nwritten) => {
    if (fd !== 1 && fd !== 2) return fdWrite(fd, iovs, iovsLen, nwritten);
    let n = 0;
    for (const [p, l] of iovecs(iovs, iovsLen)) {
      if (fd === 1) out.push(Buffer.from(new Uint8Array(memory.buffer, p, l)));
      n += l;
    }
    new DataView(memory.buffer).setUint32(nwritten, n, true);
    return 0;
  };
  w.fd_read = (fd, iovs, iovsLen, nread) => {
    if (fd !== 0) return fdRead(fd, iovs, iovsLen, nread);
    let n = 0;
    for (const [p, l] of iovecs(iovs, iovsLen)) {
      const chunk = body.subarray(stdinPos, stdinPos + l);
      new Uint8Array(memory.buffer, p, chunk.length).set(chunk);
      stdinPos += chunk.length;
      n += chunk.length;
      if (chunk.length < l) break;
    }
    new DataView(memory.buffer).setUint32(nread, n, true);
    return 0;
  };
  const instance = new WebAssembly.Instance(module, imports);
  memory = instance.exports.memory;
  wasi.start(instance);
  return Buffer.concat(out);
}

function parseCGI(buf) {
  let end = buf.indexOf('\r\n\r\n'), skip = 4;
  const lf = buf.indexOf('\n\n');
  if (end < 0 || (lf >= 0 && lf < end)) { end = lf; skip = 2; }
  if (end < 0) return null;
  const headers = {};
  let status = 200;
  for (const line of buf.subarray(0, end).toString('latin1').split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i <= 0) return null;
    const k = line.slice(0, i).trim(), v = line.slice(i + 1).trim();
    if (k.toLowerCase() === 'status') status = parseInt(v, 10);
    else headers[k] = v;
  }
  if (headers.Location && status === 200) status = 302;
  return { status, headers, body: buf.subarray(end + skip) };
}

createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    let resp;
    try {
      resp = parseCGI(run(cgiEnv(req, body), body));
    } catch (e) {
      res.writeHead(502, { 'aegis-error': 'trap' });
      res.end(String(e));
      return;
    }
    if (!resp) {
      res.writeHead(502, { 'aegis-error': 'cgi' });
      res.end();
      return;
    }
    res.writeHead(resp.status, { ...resp.headers, 'content-length': resp.body.length });
    res.end(resp.body);
  });
}).listen(Number(port), '127.0.0.1', () => console.error(`node-wasi peer on 127.0.0.1:${port}`));
