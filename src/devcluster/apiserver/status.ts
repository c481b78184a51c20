/**
 * Status errors as kube-apiserver returns them: code, reason, message, details.
 *
 * @module
 */

/** An API error that becomes a Status body (and an ERROR watch event). */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
    /** Headers of the response (Allow of a 405). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "StatusError";
  }

  /** The Status object. */
  toStatus(): Record<string, unknown> {
    return status(this.code, this.reason, this.message, this.details);
  }
}

/** Builds a Status object. */
export function status(
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): Record<string, unknown> {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: code < 400 ? "Success" : "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** How errors name a kind of object: its kind, its resource (plural) and its API group. */
export interface ResourceNames {
  readonly kind: string;
  readonly plural: string;
  /** "" for the core group. */
  readonly group: string;
}

/** Nodes, as errors name them. */
export const NODE_NAMES: ResourceNames = { kind: "Node", plural: "nodes", group: "" };

/** The resource as messages qualify it: `nodes`, `leases.coordination.k8s.io`. */
function qualified(r: ResourceNames): string {
  return r.group ? `${r.plural}.${r.group}` : r.plural;
}

function details(r: ResourceNames, name: string): Record<string, unknown> {
  return r.group ? { name, group: r.group, kind: r.plural } : { name, kind: r.plural };
}

/** 404 for an object (a node unless told). */
export function notFound(name: string, r: ResourceNames = NODE_NAMES): StatusError {
  return new StatusError(404, "NotFound", `${qualified(r)} "${name}" not found`, details(r, name));
}

/** 409 AlreadyExists for a create. */
export function alreadyExists(name: string, r: ResourceNames): StatusError {
  return new StatusError(
    409,
    "AlreadyExists",
    `${qualified(r)} "${name}" already exists`,
    details(r, name),
  );
}

/** 409 Conflict for a write whose resourceVersion precondition is stale. */
export function conflict(name: string, r: ResourceNames): StatusError {
  return new StatusError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualified(r)} "${name}": the object has been ` +
      "modified; please apply your changes to the latest version and try again",
    details(r, name),
  );
}

/** 410 for a resourceVersion older than the history. */
export function expired(rv: string): StatusError {
  return new StatusError(410, "Expired", `too old resource version: ${rv}`);
}

/** 422 for an invalid object (a node unless told). */
export function invalid(
  name: string,
  field: string,
  message: string,
  r: ResourceNames = NODE_NAMES,
): StatusError {
  const kind = r.group ? `${r.kind}.${r.group}` : r.kind;
  return new StatusError(422, "Invalid", `${kind} "${name}" is invalid: ${field}: ${message}`, {
    name,
    ...(r.group ? { group: r.group } : {}),
    kind: r.kind,
    causes: [{ reason: "FieldValueInvalid", message, field }],
  });
}

/**
 * 405 for a method `path` does not serve, with the Allow header HTTP requires on a 405
 * (RFC 9110, 15.5.6) listing the methods it does.
 */
export function methodNotAllowed(
  method: string,
  path: string,
  allow: readonly string[],
): StatusError {
  return new StatusError(
    405,
    "MethodNotAllowed",
    `the method ${method} is not supported on ${path}: allowed are ${allow.join(", ")}`,
    undefined,
    { allow: allow.join(", ") },
  );
}

/** 400 for a request that cannot be read. */
export function badRequest(message: string): StatusError {
  return new StatusError(400, "BadRequest", message);
}
