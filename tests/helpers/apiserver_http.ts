/** Plain HTTP requests to the embedded API server, for tests of its HTTP semantics. */
import type { ApiServer } from "../../src/devcluster/apiserver/mod.ts";
import { KubeClient } from "../../src/kube/client.ts";

/** A response: status, headers and the JSON body ({} when empty). */
export interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** The project's API client for the server, with its token; `insecure` skips the CA. */
export function kubeClient(api: ApiServer, insecure = false): KubeClient {
  return new KubeClient({
    server: api.url,
    caPem: insecure ? undefined : api.caPem,
    insecureSkipTLSVerify: insecure,
    token: () => Promise.resolve(api.token),
    source: "test",
  });
}

/** An HTTP client that trusts the server's CA. */
export function client(api: ApiServer): Deno.HttpClient {
  return Deno.createHttpClient({ caCerts: api.caPem ? [api.caPem] : [] });
}

/** One request with the server's token; a string body is sent as it is, anything else as JSON. */
export async function call(
  api: ApiServer,
  http: Deno.HttpClient,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await fetch(api.url + path, {
    method,
    client: http,
    headers: {
      authorization: `Bearer ${api.token}`,
      "content-type": "application/json",
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : {} };
}

/** One watch event as the server sent it. */
export interface WatchEvent {
  type: string;
  object: Record<string, unknown>;
}

/** Reads watch events from `res` until `until` holds or the stream ends. */
export async function readWatch(
  res: Response,
  until: (events: WatchEvent[]) => boolean,
): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  try {
    while (!until(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const l of lines) if (l.trim()) events.push(JSON.parse(l));
    }
  } finally {
    await reader.cancel();
  }
  return events;
}
