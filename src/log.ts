/**
 * Leveled logger: JSON lines (time, level, msg, fields) by default, plain text on a terminal.
 *
 * @module
 */

/** Levels from quietest to loudest. */
export const LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
/** One log level. */
export type Level = typeof LEVELS[number];

/** Structured fields attached to a log line. */
export type Fields = Record<string, unknown>;

/** A logger; `with` adds fields to every line. */
export interface Logger {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
  trace(msg: string, fields?: Fields): void;
  enabled(level: Level): boolean;
  with(fields: Fields): Logger;
}

/**
 * Parses LOG_LEVEL: a name, or a number of verbosity (0 info, 1 debug, 2 or more trace,
 * negative numbers quieter) as Nordix's logr levels. Returns undefined when invalid.
 */
export function parseLevel(text: string): Level | undefined {
  const t = text.trim().toLowerCase();
  if ((LEVELS as readonly string[]).includes(t)) return t as Level;
  if (t === "warning") return "warn";
  if (/^-?[0-9]+$/.test(t)) {
    const n = Number(t);
    return LEVELS[Math.max(0, Math.min(LEVELS.length - 1, n + 2))];
  }
  return undefined;
}

/** Where lines go and how they look. */
export interface LogSink {
  write(line: string): void;
  /** Text instead of JSON (for a terminal). */
  text: boolean;
}

const encoder = new TextEncoder();

/** A sink writing to stderr (text when stderr is a terminal). */
export function stderrSink(): LogSink {
  return {
    write: (line) => Deno.stderr.writeSync(encoder.encode(line + "\n")),
    text: Deno.stderr.isTerminal(),
  };
}

/**
 * A sink appending JSON lines to a file: the daemon's LOG_FILE, which a failure to open
 * names, as the one line the daemon prints then is all an operator sees.
 */
export function fileSink(path: string): LogSink {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { append: true, create: true });
  } catch (e) {
    throw new Error(`LOG_FILE ${path}: ${(e as Error).message}`, { cause: e });
  }
  return { write: (line) => file.writeSync(encoder.encode(line + "\n")), text: false };
}

function safe(value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return String(value);
  return value;
}

/** Creates a logger at `level` writing to `sink`. */
export function createLogger(
  level: Level,
  sink: LogSink = stderrSink(),
  base: Fields = {},
): Logger {
  const max = LEVELS.indexOf(level);
  const emit = (lvl: Level, msg: string, fields?: Fields) => {
    if (LEVELS.indexOf(lvl) > max) return;
    const all: Fields = { ...base, ...fields };
    if (sink.text) {
      const extra = Object.entries(all).map(([k, v]) => `${k}=${JSON.stringify(safe(v))}`);
      sink.write([new Date().toISOString(), lvl.toUpperCase().padEnd(5), msg, ...extra].join(" "));
    } else {
      const rec: Fields = { time: new Date().toISOString(), level: lvl, msg };
      for (const [k, v] of Object.entries(all)) rec[k] = safe(v);
      sink.write(JSON.stringify(rec));
    }
  };
  return {
    error: (m, f) => emit("error", m, f),
    warn: (m, f) => emit("warn", m, f),
    info: (m, f) => emit("info", m, f),
    debug: (m, f) => emit("debug", m, f),
    trace: (m, f) => emit("trace", m, f),
    enabled: (lvl) => LEVELS.indexOf(lvl) <= max,
    with: (fields) => createLogger(level, sink, { ...base, ...fields }),
  };
}

/** A logger that drops everything (tests, quiet subcommands). */
export const silentLogger: Logger = createLogger("error", { write: () => {}, text: false });
