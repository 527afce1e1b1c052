/**
 * Strict parser for Go duration strings (`8h`, `30m`, `1h30m`, `1.5h`, `250ms`), the format of
 * `spec.renewBefore` and `spec.fallbackLifetime` and of every duration in Kubernetes APIs.
 *
 * Grammar and limits follow Go's `time.ParseDuration` (https://pkg.go.dev/time#ParseDuration):
 * an optional sign, then one or more `<decimal><unit>` segments, units `ns`, `us` (or `µs`/`μs`),
 * `ms`, `s`, `m`, `h`; the bare string `0` is allowed; the total must fit in an int64 of
 * nanoseconds (about 292 years). The API server's CEL `duration()` uses the same function, so the
 * operator and the API server agree on every value.
 */

const NANOS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  "\u00b5s": 1_000n, // MICRO SIGN
  "\u03bcs": 1_000n, // GREEK SMALL LETTER MU
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** Largest magnitude Go's `time.Duration` (int64 nanoseconds) can hold. */
const MAX_NANOS = (1n << 63n) - 1n;

/** One `<decimal><unit>` segment: integer digits, optional `.fraction`, unit letters. */
const SEGMENT = /^([0-9]*)(?:\.([0-9]*))?([^0-9.]+)/;

/**
 * Parses a Go duration string.
 *
 * @param s  e.g. `"8h"`, `"1h30m"`, `"0.5h"`, `"-90s"`, `"0"`.
 * @returns the duration in **seconds** (may be fractional, negative if the string starts with `-`;
 *   exact to the nanosecond as far as a double allows).
 * @throws {RangeError} when `s` is not a valid Go duration (empty, missing or unknown unit, a
 *   segment without digits, stray characters) or exceeds Go's int64-nanosecond range.
 */
export function parseGoDuration(s: string): number {
  const fail = (why: string): never => {
    throw new RangeError(`invalid duration ${JSON.stringify(s)}: ${why}`);
  };
  let rest = s;
  let negative = false;
  if (rest.startsWith("-") || rest.startsWith("+")) {
    negative = rest.startsWith("-");
    rest = rest.slice(1);
  }
  if (rest === "0") return 0;
  if (rest === "") fail("empty");
  let total = 0n;
  while (rest !== "") {
    const m = SEGMENT.exec(rest);
    if (m === null) fail("expected <number><unit>, e.g. 8h or 30m");
    const [whole, intDigits = "", fracDigits = "", unit = ""] = m as RegExpExecArray;
    if (intDigits === "" && fracDigits === "") fail("a number is required before each unit");
    const perUnit = NANOS_PER_UNIT[unit];
    if (perUnit === undefined) fail(`unknown unit ${JSON.stringify(unit)} (use h, m, s, ms, us or ns)`);
    const unitNanos = perUnit as bigint;
    let nanos = BigInt(intDigits === "" ? "0" : intDigits) * unitNanos;
    if (fracDigits !== "") {
      // Truncate toward zero below one nanosecond, as Go does.
      nanos += (BigInt(fracDigits) * unitNanos) / 10n ** BigInt(fracDigits.length);
    }
    total += nanos;
    if (total > MAX_NANOS + (negative ? 1n : 0n)) fail("out of range (more than about 292 years)");
    rest = rest.slice(whole.length);
  }
  const seconds = Number(total) / 1e9;
  return negative ? -seconds : seconds;
}

/**
 * Formats a number of seconds as a compact Go duration string (`28800` → `"8h0m0s"` in Go; here
 * the shorter `"8h"`), for status messages and logs. Sub-second parts are rounded to milliseconds.
 *
 * @param seconds  a finite number of seconds (negative allowed).
 * @throws {RangeError} when `seconds` is not finite.
 */
export function formatGoDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) throw new RangeError(`cannot format ${seconds} as a duration`);
  const sign = seconds < 0 ? "-" : "";
  let ms = Math.round(Math.abs(seconds) * 1000);
  const h = Math.floor(ms / 3_600_000);
  ms -= h * 3_600_000;
  const m = Math.floor(ms / 60_000);
  ms -= m * 60_000;
  const s = ms / 1000;
  const body = (h > 0 ? `${h}h` : "") + (m > 0 ? `${m}m` : "") + (s > 0 ? `${s}s` : "");
  return body === "" ? "0s" : sign + body;
}
