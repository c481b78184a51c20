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

/** 404 for a node. */
export function notFound(name: string): StatusError {
  return new StatusError(404, "NotFound", `nodes "${name}" not found`, { name, kind: "nodes" });
}

/** 410 for a resourceVersion older than the history. */
export function expired(rv: string): StatusError {
  return new StatusError(410, "Expired", `too old resource version: ${rv}`);
}

/** 422 for an invalid object. */
export function invalid(name: string, field: string, message: string): StatusError {
  return new StatusError(422, "Invalid", `Node "${name}" is invalid: ${field}: ${message}`, {
    name,
    kind: "Node",
    causes: [{ reason: "FieldValueInvalid", message, field }],
  });
}

/** 400 for a request that cannot be read. */
export function badRequest(message: string): StatusError {
  return new StatusError(400, "BadRequest", message);
}
