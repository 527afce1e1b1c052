import { describe, expect, it } from "vitest";
import { pino } from "pino";
import type { KubeClient, KubeObject } from "./client.ts";
import { EVENT_MAX_IN_FLIGHT, EVENT_MAX_QUEUED, eventName, KubeEventRecorder } from "./events.ts";

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A KubeClient stand-in that records POSTed Event bodies. */
function recorder(): { rec: KubeEventRecorder; posted: Record<string, unknown>[] } {
  const posted: Record<string, unknown>[] = [];
  const kube = {
    request: (_m: string, _p: string, o: { body: Record<string, unknown> }) => {
      posted.push(o.body);
      return Promise.resolve({});
    },
  } as unknown as KubeClient;
  return { rec: new KubeEventRecorder(kube, pino({ level: "silent" }), "test"), posted };
}

const obj = (name: string, uid = "u1"): KubeObject => ({
  apiVersion: "nexar-operator.io/v1alpha1",
  kind: "NexarToken",
  metadata: { name, namespace: "ns", uid },
});

describe("eventName", () => {
  it("is a valid DNS subdomain <name>.<hex>, distinct per sequence number (a generateName ending in '.' is rejected)", () => {
    const a = eventName("supply", 1_790_000_000_000, 0);
    const b = eventName("supply", 1_790_000_000_000, 1);
    expect(a).toMatch(/^supply\.[0-9a-f]+$/);
    expect(a).toMatch(DNS_SUBDOMAIN);
    expect(a).not.toBe(b);
  });

  it("stays within 253 characters for the longest object names", () => {
    const n = eventName(`${"a".repeat(240)}.b`, Date.now(), 7);
    expect(n.length).toBeLessThanOrEqual(253);
    expect(n).toMatch(DNS_SUBDOMAIN);
  });
});

describe("KubeEventRecorder", () => {
  it("drops an identical Event for the same object and reason, also when other Events come in between", async () => {
    const { rec, posted } = recorder();
    const o = obj("supply");
    rec.warn(o, "TokenRequestFailed", "Timeout: x");
    rec.warn(o, "SecretConflict", "conflict");
    rec.warn(o, "TokenRequestFailed", "Timeout: x");
    rec.warn(o, "SecretConflict", "conflict");
    rec.normal(o, "TokenIssued", "expiring A");
    rec.normal(o, "TokenIssued", "expiring B");
    await rec.idle();
    expect(posted.map((b) => b.reason)).toEqual(["TokenRequestFailed", "SecretConflict", "TokenIssued", "TokenIssued"]);
    rec.warn(obj("other", "u2"), "TokenRequestFailed", "Timeout: x");
    await rec.idle();
    expect(posted).toHaveLength(5);
    for (const b of posted) {
      const meta = b.metadata as { name: string; generateName?: string };
      expect(meta.generateName).toBeUndefined();
      expect(meta.name).toMatch(DNS_SUBDOMAIN);
    }
  });

  it("sends at most EVENT_MAX_IN_FLIGHT at once, in order, and drops beyond EVENT_MAX_QUEUED waiting", async () => {
    const started: string[] = [];
    const release: (() => void)[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const kube = {
      request: (_m: string, _p: string, o: { body: { metadata: { name: string } } }) => {
        started.push(o.body.metadata.name);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        return new Promise<void>((r) => release.push(() => (inFlight--, r())));
      },
    } as unknown as KubeClient;
    const rec = new KubeEventRecorder(kube, pino({ level: "silent" }), "test");
    const total = EVENT_MAX_IN_FLIGHT + EVENT_MAX_QUEUED + 5;
    for (let i = 0; i < total; i++) rec.normal(obj(`t${i}`, `u${i}`), "TokenIssued", "x");
    expect(started).toHaveLength(EVENT_MAX_IN_FLIGHT);
    expect(rec.pending()).toBe(EVENT_MAX_IN_FLIGHT + EVENT_MAX_QUEUED); // 5 dropped
    const idle = rec.idle();
    while (release.length > 0) {
      release.shift()?.();
      await new Promise((r) => setImmediate(r));
    }
    await idle;
    expect(maxInFlight).toBe(EVENT_MAX_IN_FLIGHT);
    expect(started).toHaveLength(EVENT_MAX_IN_FLIGHT + EVENT_MAX_QUEUED);
    expect(started.slice(0, 3).map((n) => n.split(".")[0])).toEqual(["t0", "t1", "t2"]);
    expect(rec.pending()).toBe(0);
  });
});
