// A webhook receiver as an existing WhatsApp app would have it, for wagate's
// end-to-end test (cmd/sdkapp_test.go).
//
//   node app.mjs provider <app secret> <wasender secret> <waha key> <evolution token>
//     Cloud API requests (X-Hub-Signature-256) go to whatsapp-api-js's
//     node:http middleware, signature check on; WASenderApi requests
//     (X-Webhook-Signature) are checked with the wasenderapi SDK's
//     verifyWasenderWebhookSignature; WAHA requests (X-Webhook-Hmac) are
//     checked as WAHA documents them (no public SDK on npm verifies them):
//     HMAC-SHA512 of the raw body under the key, in lowercase hex; Evolution
//     API requests by the header the operator configures on its webhook,
//     here Authorization: Bearer <token>.
//   node app.mjs event
//     A wagate-aware receiver: wagate's event JSON, its Idempotency-Key.
//
// It prints {"port": N} once listening. GET /log returns every request it
// received: its answer, headers of interest, what the SDK ran and the body.
import { createServer } from "node:http";
import { Readable } from "node:stream";
import { AsyncLocalStorage } from "node:async_hooks";
import { createHmac, timingSafeEqual } from "node:crypto";
import { WhatsAppAPI } from "whatsapp-api-js/middleware/node-http";
import { verifyWasenderWebhookSignature } from "wasenderapi";

const [mode, appSecret, wasenderSecret, wahaKey, evolutionToken] = process.argv.slice(2);
const requests = [];
const current = new AsyncLocalStorage();

const Whatsapp = new WhatsAppAPI({ token: "unused", appSecret, webhookVerifyToken: "unused", v: "v23.0", secure: true });
Whatsapp.on.message = ({ message }) => {
  const rec = current.getStore();
  rec.ran.push({ handler: "message", id: message.id });
};
Whatsapp.on.status = ({ id, status }) => {
  const rec = current.getStore();
  rec.ran.push({ handler: "status", id, status });
};

function wahaValid(headers, body) {
  const got = headers["x-webhook-hmac"];
  const alg = headers["x-webhook-hmac-algorithm"] ?? "sha512";
  if (typeof got !== "string" || alg !== "sha512") return false;
  const want = createHmac("sha512", wahaKey).update(body).digest("hex");
  return got.length === want.length && timingSafeEqual(Buffer.from(got), Buffer.from(want));
}

async function handle(req, body, rec) {
  if (mode === "event") {
    const ev = JSON.parse(body.toString("utf-8"));
    if (!ev.key || ev.key !== req.headers["idempotency-key"]) return 400;
    rec.ran.push({ handler: ev.kind, id: ev.id, status: ev.status ?? "" });
    return 200;
  }
  if (req.headers["x-hub-signature-256"] !== undefined) {
    rec.provider = "cloud";
    const r = Readable.from([body]);
    r.headers = req.headers;
    return current.run(rec, () => Whatsapp.handle_post(r));
  }
  if (req.headers["x-webhook-signature"] !== undefined) {
    rec.provider = "wasender";
    if (!verifyWasenderWebhookSignature(req.headers["x-webhook-signature"], wasenderSecret)) return 401;
    const data = JSON.parse(body.toString("utf-8"));
    rec.ran.push({ handler: data.event });
    return 200;
  }
  if (req.headers["x-webhook-hmac"] !== undefined) {
    rec.provider = "waha";
    if (!wahaValid(req.headers, body)) return 401;
    const data = JSON.parse(body.toString("utf-8"));
    rec.ran.push({ handler: data.event });
    return 200;
  }
  if (req.headers["authorization"] !== undefined) {
    rec.provider = "evolution";
    const want = Buffer.from("Bearer " + evolutionToken);
    const got = Buffer.from(req.headers["authorization"]);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return 401;
    const data = JSON.parse(body.toString("utf-8"));
    rec.ran.push({ handler: data.event });
    return 200;
  }
  return 401;
}

const server = createServer(async (req, res) => {
  if (req.method === "GET" && req.url === "/log") {
    res.setHeader("Content-Type", "application/json");
    res.end(JSON.stringify(requests));
    return;
  }
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  const rec = {
    key: req.headers["idempotency-key"] ?? "",
    fence: req.headers["wagate-fencing-token"] ?? "",
    provider: "",
    ran: [],
    code: 0,
    body: body.toString("base64"),
  };
  try {
    rec.code = await handle(req, body, rec);
  } catch (e) {
    rec.code = 500;
    rec.error = String(e);
  }
  requests.push(rec);
  res.statusCode = rec.code;
  res.end();
});
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ port: server.address().port }));
});
