/**
 * Keeps this node's address annotation for one network in step with the host's addresses:
 * reads them and follows their changes through an {@link AddressSource} (rtnetlink, or `ip`
 * where FFI is not allowed: src/publish/sources.ts), and patches the Node (through a
 * callback) when the selection (src/publish/addresses.ts) differs from what the annotation
 * says.
 *
 * It never patches while it has nothing usable: the annotation stays as it was, so peers
 * keep their routes through a passing gap, and the problem is reported once, when it has
 * lasted a few seconds (an address being replaced is no problem).
 *
 * @module
 */
import type { Logger } from "../log.ts";
import {
  type AddressSelector,
  type AnnotationPlan,
  describeCandidates,
  describeSelector,
  type HostAddress,
  planAnnotation,
  planProblem,
} from "./addresses.ts";
import { type AddressSource, iprouteAddressSource } from "./sources.ts";

/** Delays of the publisher, in milliseconds. */
export interface PublisherTiming {
  /** From the first address event of a burst to the read that takes them all in. */
  debounceMs: number;
  /**
   * After start, one more read: the monitor may subscribe after the first read, and a
   * change between the two would otherwise go unseen.
   */
  settleReadMs: number;
  /** First delay before retrying a failed publish or read; doubles each time. */
  retryMinMs: number;
  /** Longest delay between retries. */
  retryMaxMs: number;
  /** The same publish error is logged at most once per this period. */
  errorLogMs: number;
  /**
   * How long a problem must last before it is reported: an address replaced (deleted,
   * then added; a new IPv6 address is tentative for a second or two) is not one.
   */
  problemGraceMs: number;
}

const DEFAULT_TIMING: PublisherTiming = {
  debounceMs: 100,
  settleReadMs: 1000,
  retryMinMs: 1000,
  retryMaxMs: 30_000,
  errorLogMs: 30_000,
  problemGraceMs: 3000,
};

/** Options of {@link startAddressPublisher}. */
export interface AddressPublisherOptions {
  /** Read the addresses of this network namespace (`ip -n NS`). */
  netns?: string;
  /** Which addresses to publish. */
  selector: AddressSelector;
  /**
   * The annotation's value on our Node as the informer last saw it: "" when the Node has
   * none, undefined while our Node is not known yet (nothing is published until it is).
   */
  current(): string | undefined;
  /** Sets the annotation on our Node to `value`; may throw (it is retried). */
  publish(value: string): Promise<void>;
  log: Logger;
  /**
   * Called with a one-line problem when one has lasted `problemGraceMs` or changes, with
   * undefined when it ends.
   */
  onProblem?(problem: string | undefined): void;
  /** Where the addresses come from; default `ip` (see src/publish/sources.ts). */
  source?: AddressSource;
  /** Path of the `ip` program of the default source; default "ip" from PATH. */
  ipPath?: string;
  /** Delays; the defaults suit a daemon, tests shorten them. */
  timing?: Partial<PublisherTiming>;
}

/** What the publisher did, since it started. */
export interface PublisherCounters {
  /** Successful calls of `publish`. */
  publications: number;
  /** Calls of `publish` that threw. */
  failures: number;
  /** Reads of the host's addresses that succeeded. */
  reads: number;
}

/** A running publisher. */
export interface AddressPublisher {
  /**
   * Compares again with `current()`: call it whenever our Node changes (first seen,
   * annotation edited by someone else), so that a wrong value is put back.
   */
  recheck(): void;
  /**
   * The value the annotation should have as of the last read and `current()` ("" when
   * nothing, or before the first read).
   */
  selected(): string;
  /** The host's addresses as last read (empty before the first read). */
  addresses(): readonly HostAddress[];
  /** The problem being reported, if any. */
  problem(): string | undefined;
  /** Live counters. */
  readonly counters: Readonly<PublisherCounters>;
  /** Stops the monitor and every timer; a publish in flight is not waited for. */
  close(): Promise<void>;
}

/** The host's addresses, through `ip [-n NS] -json address show`. */
export function readHostAddresses(
  opts: { netns?: string; ipPath?: string } = {},
): Promise<HostAddress[]> {
  return iprouteAddressSource({ ...opts, selector: { subnets: [] } }).read();
}

type Timer = ReturnType<typeof setTimeout>;

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * Starts following the host's addresses and publishing the selection. The first read
 * starts at once; the returned publisher runs until closed.
 */
export function startAddressPublisher(opts: AddressPublisherOptions): AddressPublisher {
  const timing: PublisherTiming = { ...DEFAULT_TIMING, ...opts.timing };
  const log = opts.log;
  const source = opts.source ?? iprouteAddressSource({ ...opts, log: opts.log });
  const where = describeSelector(opts.selector);
  const counters: PublisherCounters = { publications: 0, failures: 0, reads: 0 };
  let closed = false;

  // The host's side.
  let addrs: HostAddress[] | undefined;
  let plan: AnnotationPlan | undefined;
  let readError: string | undefined;
  let reading: Promise<void> | undefined;
  let readAgain = false;
  let readTimer: Timer | undefined;
  let readRetryMs = timing.retryMinMs;
  let problem: string | undefined;

  // The Node's side.
  let inFlight = false;
  /** The value last published, until the informer shows a change of our Node. */
  let published: string | undefined;
  let waitingLogged = false;
  let retryTimer: Timer | undefined;
  let retryValue: string | undefined;
  let retryMs = timing.retryMinMs;
  let lastError: { text: string; at: number } | undefined;

  let pendingProblem: { text: string; timer: Timer } | undefined;

  /**
   * Reports `next` once it has lasted the grace period (a passing gap is not worth a
   * warning); the end of a problem is reported at once.
   */
  const setProblem = (next: string | undefined) => {
    if (next !== undefined && pendingProblem?.text === next) return;
    clearTimeout(pendingProblem?.timer);
    pendingProblem = undefined;
    if (next === problem) return;
    if (next === undefined) {
      report(undefined);
      return;
    }
    pendingProblem = {
      text: next,
      timer: setTimeout(() => {
        pendingProblem = undefined;
        report(next);
      }, timing.problemGraceMs),
    };
  };

  const report = (next: string | undefined) => {
    const before = problem;
    problem = next;
    if (next !== undefined) {
      log.warn("address annotation problem", {
        selector: where,
        problem: next,
        addresses: addrs ? describeCandidates(addrs, opts.selector) : undefined,
      });
    } else {
      log.info("address annotation: problem resolved", { selector: where, was: before });
    }
    opts.onProblem?.(next);
  };

  const scheduleRead = (delay: number) => {
    if (closed || readTimer !== undefined) return;
    readTimer = setTimeout(() => {
      readTimer = undefined;
      read();
    }, delay);
  };

  const read = () => {
    if (closed) return;
    if (reading) {
      // A change came during the read: the read may have missed it.
      readAgain = true;
      return;
    }
    reading = (async () => {
      try {
        const next = await source.read();
        if (closed) return;
        counters.reads++;
        addrs = next;
        readError = undefined;
        readRetryMs = timing.retryMinMs;
      } catch (e) {
        if (closed) return;
        readError = `cannot read the host's addresses: ${message(e)}`;
        scheduleRead(readRetryMs);
        readRetryMs = Math.min(readRetryMs * 2, timing.retryMaxMs);
      }
      sync();
    })().finally(() => {
      reading = undefined;
      if (readAgain) {
        readAgain = false;
        read();
      }
    });
  };

  const sync = () => {
    if (closed) return;
    if (!addrs) {
      setProblem(readError);
      return;
    }
    const cur = opts.current();
    plan = planAnnotation(addrs, opts.selector, cur);
    setProblem(readError ?? planProblem(plan, opts.selector));
    // Nothing of the host's own: the annotation stays as it is.
    if (plan.chosen[4] === undefined && plan.chosen[6] === undefined) return;
    const want = plan.value;
    if (cur === undefined) {
      if (!waitingLogged) log.debug("address annotation: waiting for our Node", { want });
      waitingLogged = true;
      return;
    }
    if (cur === want) {
      // Nothing differs any more: a pending retry has nothing to do.
      clearTimeout(retryTimer);
      retryTimer = undefined;
      retryMs = timing.retryMinMs;
      return;
    }
    // The informer has not shown our last patch yet.
    if (published === want) return;
    if (inFlight) return;
    if (retryTimer !== undefined && retryValue === want) return;
    clearTimeout(retryTimer);
    retryTimer = undefined;
    attempt(want, cur);
  };

  const attempt = (value: string, previous: string) => {
    inFlight = true;
    // Through a promise, so that a callback throwing at once counts as a failed publish.
    Promise.resolve().then(() => opts.publish(value)).then(
      () => {
        counters.publications++;
        published = value;
        retryMs = timing.retryMinMs;
        log.info("address annotation published", {
          selector: where,
          value,
          previous,
          ...(lastError ? { afterFailures: true } : {}),
        });
        lastError = undefined;
      },
      (e: unknown) => {
        counters.failures++;
        const text = message(e);
        const now = Date.now();
        const fields = { selector: where, value, error: text, retryInMs: retryMs };
        if (!lastError || lastError.text !== text || now - lastError.at >= timing.errorLogMs) {
          log.warn("address annotation: publish failed", fields);
          lastError = { text, at: now };
        } else {
          log.debug("address annotation: publish failed", fields);
        }
        if (closed) return;
        retryValue = value;
        retryTimer = setTimeout(() => {
          retryTimer = undefined;
          sync();
        }, retryMs);
        retryMs = Math.min(retryMs * 2, timing.retryMaxMs);
      },
    ).finally(() => {
      inFlight = false;
      // The addresses or the Node may have changed while the patch was on its way.
      sync();
    });
  };

  // Any change that may matter schedules one read for the whole burst.
  const watcher = source.watch(() => scheduleRead(timing.debounceMs));

  read();
  let settleTimer: Timer | undefined = setTimeout(() => {
    settleTimer = undefined;
    read();
  }, timing.settleReadMs);

  return {
    recheck() {
      published = undefined;
      sync();
    },
    selected: () => plan?.value ?? "",
    addresses: () => addrs ?? [],
    problem: () => problem,
    counters,
    async close() {
      if (closed) return;
      closed = true;
      const timers = [readTimer, retryTimer, settleTimer, pendingProblem?.timer];
      for (const t of timers) clearTimeout(t);
      readTimer = retryTimer = settleTimer = undefined;
      pendingProblem = undefined;
      await watcher.close();
      await reading;
    },
  };
}
