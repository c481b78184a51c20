/**
 * Patches as kube-apiserver applies them to Nodes: JSON merge patch (RFC 7386), strategic
 * merge patch (maps merge, `null` deletes; lists are replaced, except status.addresses and
 * status.conditions which merge by their key), and JSON patch (RFC 6902).
 *
 * @module
 */

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Thrown for a patch that cannot be applied; becomes a 422 or 400. */
export class PatchError extends Error {}

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** RFC 7386 merge patch. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k] ?? null, v);
  }
  return out;
}

const MERGE_KEYS: Record<string, string> = {
  "status.addresses": "type",
  "status.conditions": "type",
};

/** Strategic merge patch for Nodes. */
export function strategicMergePatch(target: Json, patch: Json, path = ""): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, Json> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith("$")) continue;
    const here = path ? `${path}.${k}` : k;
    const mergeKey = MERGE_KEYS[here];
    if (v === null) delete out[k];
    else if (mergeKey && Array.isArray(v) && Array.isArray(out[k])) {
      const list = [...(out[k] as Json[])];
      for (const item of v) {
        if (!isObject(item)) continue;
        const i = list.findIndex((x) => isObject(x) && x[mergeKey] === item[mergeKey]);
        if (i >= 0) list[i] = strategicMergePatch(list[i], item, here);
        else list.push(item);
      }
      out[k] = list;
    } else out[k] = strategicMergePatch(out[k] ?? null, v, here);
  }
  return out;
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw new PatchError(`invalid JSON pointer ${JSON.stringify(path)}`);
  return path.slice(1).split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function parentOf(doc: Json, parts: string[]): [Json, string] {
  let cur: Json = doc;
  for (const p of parts.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[Number(p)];
    else if (isObject(cur)) cur = cur[p];
    else cur = undefined as unknown as Json;
    if (cur === undefined) {
      throw new PatchError(`path ${JSON.stringify("/" + parts.join("/"))} does not exist`);
    }
  }
  return [cur, parts[parts.length - 1]];
}

function get(doc: Json, path: string): Json {
  const parts = pointer(path);
  if (parts.length === 0) return doc;
  const [parent, key] = parentOf(doc, parts);
  const v = Array.isArray(parent)
    ? parent[Number(key)]
    : isObject(parent)
    ? parent[key]
    : undefined;
  if (v === undefined) throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
  return v;
}

function remove(doc: Json, path: string): Json {
  const [parent, key] = parentOf(doc, pointer(path));
  if (Array.isArray(parent)) {
    const i = Number(key);
    if (!(i >= 0 && i < parent.length)) {
      throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
    }
    return parent.splice(i, 1)[0];
  }
  if (!isObject(parent) || !(key in parent)) {
    throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
  }
  const v = parent[key];
  delete parent[key];
  return v;
}

function add(doc: Json, path: string, value: Json): Json {
  const parts = pointer(path);
  if (parts.length === 0) return value;
  const [parent, key] = parentOf(doc, parts);
  if (Array.isArray(parent)) {
    const i = key === "-" ? parent.length : Number(key);
    if (!(i >= 0 && i <= parent.length)) throw new PatchError(`index ${key} out of range`);
    parent.splice(i, 0, value);
  } else if (isObject(parent)) parent[key] = value;
  else throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
  return doc;
}

/** RFC 6902 JSON patch. */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new PatchError("a JSON patch is a list of operations");
  let doc = structuredClone(target);
  for (const raw of ops) {
    if (!isObject(raw) || typeof raw.op !== "string" || typeof raw.path !== "string") {
      throw new PatchError(`invalid operation ${JSON.stringify(raw)}`);
    }
    const { op, path } = raw;
    switch (op) {
      case "add":
        doc = add(doc, path, structuredClone(raw.value ?? null));
        break;
      case "remove":
        remove(doc, path);
        break;
      case "replace":
        get(doc, path);
        if (pointer(path).length === 0) doc = structuredClone(raw.value ?? null);
        else {
          remove(doc, path);
          doc = add(doc, path, structuredClone(raw.value ?? null));
        }
        break;
      case "move":
      case "copy": {
        if (typeof raw.from !== "string") throw new PatchError(`${op} needs "from"`);
        const v = op === "move" ? remove(doc, raw.from) : structuredClone(get(doc, raw.from));
        doc = add(doc, path, v);
        break;
      }
      case "test":
        if (JSON.stringify(get(doc, path)) !== JSON.stringify(raw.value)) {
          throw new PatchError(`test failed at ${JSON.stringify(path)}`);
        }
        break;
      default:
        throw new PatchError(`unknown operation ${JSON.stringify(op)}`);
    }
  }
  return doc;
}
