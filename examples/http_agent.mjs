// An agent loop over the gateway's HTTP API in Node (18+, no packages): heartbeat before each step,
// stop on a kill, acknowledge it (with metadata and a checkpoint), wait for the resume, go on.
//
//   MESH_KEY=mk-... MESH_URL=http://127.0.0.1:8790 node examples/http_agent.mjs
//
// MESH_INSTANCE names the instance (unless the key fixes one); STEPS ends the loop after that many
// steps (default: run until killed with action "raise"); STEP_SECONDS paces it (default 1).

const url = `${process.env.MESH_URL ?? "http://127.0.0.1:8790"}/api/v1`;
const key = process.env.MESH_KEY;
const steps = Number(process.env.STEPS ?? 0);
const pause = Number(process.env.STEP_SECONDS ?? 1) * 1000;
if (!key) throw new Error("set MESH_KEY to the agent's gateway key (mesh gateway key create ...)");

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${key}` };
  if (process.env.MESH_INSTANCE) headers["X-Mesh-Instance"] = process.env.MESH_INSTANCE;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}: ${data.error?.message}`);
  return data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let done = (await api("GET", "/checkpoint")).state?.done ?? 0;
console.log(`starting at step ${done}`);
while (steps === 0 || done < steps) {
  const answer = await api("POST", "/heartbeat", { metadata: { done }, interval: 5 });
  if (answer.killed) {
    console.log(`killed (action ${answer.action}) at step ${done}: ${answer.record?.reason ?? ""}`);
    await api("POST", "/halted", { metadata: { done }, checkpoint: { done } });
    console.log("acknowledged");
    if (answer.action === "raise") {
      await api("POST", "/heartbeat", { status: "stopped" });
      console.log("stopped");
      process.exit(0);
    }
    // Long-poll until the kill is lifted (each poll returns the moment it is).
    while ((await api("GET", "/control?killed=true&wait=30")).killed) {}
    console.log(`resumed at step ${done}`);
    continue;
  }
  done += 1; // the work of one step goes here
  await api("POST", "/checkpoint", { state: { done } });
  console.log(`step ${done}`);
  await sleep(pause);
}
await api("POST", "/heartbeat", { status: "stopped", metadata: { done } });
console.log("stopped");
