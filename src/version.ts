/**
 * The program version. `./build.sh binary` (and the image build) stamps src/version.json
 * from `git describe` before compiling; a development run reports the placeholder.
 *
 * @module
 */
import stamp from "./version.json" with { type: "json" };

/** Version text, e.g. `v0.1.0-3-gabc1234`. */
export const VERSION: string = stamp.version;

/** `version`: prints the version. */
export function versionCommand(_args: string[]): Promise<number> {
  console.log(`xcluster-cni ${VERSION} (deno ${Deno.version.deno})`);
  return Promise.resolve(0);
}
