/**
 * The program version. `./build.sh binary` stamps it through XCLUSTER_CNI_VERSION at compile
 * time; a development run reports the placeholder.
 *
 * @module
 */

/** Version text, e.g. `v0.1.0-3-gabc1234`. */
export const VERSION: string = Deno.env.get("XCLUSTER_CNI_VERSION") ?? "v0.0.0-dev";

/** `version`: prints the version. */
export function versionCommand(_args: string[]): Promise<number> {
  console.log(`xcluster-cni ${VERSION} (deno ${Deno.version.deno})`);
  return Promise.resolve(0);
}
