/**
 * Where the Kubernetes API credentials are looked for, and in which order: an explicit
 * kubeconfig, else the in-cluster service account, else the first file of `KUBECONFIG`,
 * else ~/.kube/config. The daemon's client (src/kube/kubeconfig.ts) loads what this names;
 * kube-node names it in messages and checks it in STATUS.
 *
 * On the IPAM's start-up path, as src/state.ts: it imports nothing (the client's zod and
 * YAML load only when the API is used).
 *
 * @module
 */

/** Where the service account's files are mounted in a pod. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The credentials to use, not yet read. */
export type ApiCredentials =
  | {
    kind: "kubeconfig";
    path: string;
    /** What named the file: the caller's option, KUBECONFIG, or HOME (~/.kube/config). */
    from: "option" | "KUBECONFIG" | "HOME";
  }
  | { kind: "in-cluster"; host: string; port: string }
  | { kind: "none" };

/**
 * Which credentials to use: `kubeconfig` when set, else in-cluster, else the first entry
 * of `KUBECONFIG`, else `$HOME/.kube/config`. Pure: whether the files are there is the
 * caller's to find out.
 *
 * @example
 * ```ts
 * findApiCredentials(undefined, { KUBECONFIG: ":/a:/b" });
 * // { kind: "kubeconfig", path: "/a", from: "KUBECONFIG" }
 * ```
 */
export function findApiCredentials(
  kubeconfig: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): ApiCredentials {
  if (kubeconfig) return { kind: "kubeconfig", path: kubeconfig, from: "option" };
  const host = env.KUBERNETES_SERVICE_HOST, port = env.KUBERNETES_SERVICE_PORT;
  if (host && port) return { kind: "in-cluster", host, port };
  const fromEnv = env.KUBECONFIG?.split(":").find((p) => p !== "");
  if (fromEnv) return { kind: "kubeconfig", path: fromEnv, from: "KUBECONFIG" };
  if (env.HOME) return { kind: "kubeconfig", path: `${env.HOME}/.kube/config`, from: "HOME" };
  return { kind: "none" };
}

/**
 * The files the credentials are read from (a kubeconfig's own references aside), for a
 * readiness check; none when there are no credentials.
 */
export function credentialFiles(
  creds: ApiCredentials,
  serviceAccountDir = SERVICE_ACCOUNT_DIR,
): string[] {
  switch (creds.kind) {
    case "kubeconfig":
      return [creds.path];
    case "in-cluster":
      return [`${serviceAccountDir}/ca.crt`, `${serviceAccountDir}/token`];
    case "none":
      return [];
  }
}
