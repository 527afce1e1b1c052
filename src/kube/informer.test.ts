import { getEventListeners } from "node:events";
import { describe, expect, it } from "vitest";
import { pino } from "pino";
import { KubeApiError, type KubeClient, type KubeObject } from "./client.ts";
import { Informer, sleep } from "./informer.ts";

const item = (name: string, rv: string): KubeObject => ({ metadata: { name, namespace: "ns", resourceVersion: rv } });

describe("Informer without a store (metadata-only watch)", () => {
  it("on a 410 relist reports objects that vanished meanwhile as deleted, and skips unchanged ones", async () => {
    const lists = [
      { metadata: { resourceVersion: "10" }, items: [item("a", "1"), item("b", "2")] },
      { metadata: { resourceVersion: "20" }, items: [item("a", "1"), item("c", "15")] },
    ];
    let watches = 0;
    const kube = {
      request: () => Promise.resolve(lists.shift() ?? { metadata: { resourceVersion: "20" }, items: [] }),
      watch: (_p: string, o: { signal?: AbortSignal }) => {
        watches += 1;
        if (watches === 1) return Promise.reject(new KubeApiError(410, "Expired", "too old resource version"));
        return new Promise<void>((resolve) => o.signal?.addEventListener("abort", () => resolve()));
      },
    } as unknown as KubeClient;
    const seen: string[] = [];
    const inf = new Informer<KubeObject>({
      client: kube,
      path: () => "/api/v1/secrets",
      store: false,
      logger: pino({ level: "silent" }),
      handlers: {
        onAdd: (o) => seen.push(`add ${o.metadata.name}`),
        onUpdate: (o) => seen.push(`update ${o.metadata.name}`),
        onDelete: (o) => seen.push(`delete ${o.metadata.namespace}/${o.metadata.name}`),
      },
    });
    inf.start();
    for (let i = 0; i < 100 && watches < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await inf.stop();
    expect(seen).toEqual(["add a", "add b", "add c", "delete ns/b"]);
    expect(inf.size()).toBe(0); // no objects kept, only names and resourceVersions
  });
});

describe("Informer watch ERROR events", () => {
  it("stops the stream through its signal on an ERROR 410 event (never throws from the callback) and relists", async () => {
    let lists = 0;
    let watches = 0;
    let threw = false;
    let abortedByInformer = false;
    const kube = {
      request: () => {
        lists += 1;
        return Promise.resolve({ metadata: { resourceVersion: String(lists * 10) }, items: [] });
      },
      watch: (_p: string, o: { signal?: AbortSignal }, onEvent: (ev: unknown) => void) => {
        watches += 1;
        if (watches === 1) {
          try {
            onEvent({ type: "ERROR", object: { kind: "Status", code: 410, message: "too old resource version" } });
          } catch {
            threw = true;
          }
          abortedByInformer = o.signal?.aborted === true;
          return Promise.reject(new DOMException("This operation was aborted", "AbortError"));
        }
        return new Promise<void>((resolve) => o.signal?.addEventListener("abort", () => resolve()));
      },
    } as unknown as KubeClient;
    const inf = new Informer<KubeObject>({
      client: kube,
      path: () => "/api/v1/secrets",
      store: false,
      logger: pino({ level: "silent" }),
      handlers: {},
    });
    inf.start();
    for (let i = 0; i < 100 && watches < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await inf.stop();
    expect(threw).toBe(false);
    expect(abortedByInformer).toBe(true);
    expect(lists).toBe(2); // relisted after the 410
  });
});

describe("sleep (watch backoff)", () => {
  it("leaves no abort listener behind once it resolved, and resolves at once on abort", async () => {
    const ctrl = new AbortController();
    for (let i = 0; i < 20; i++) await sleep(1, ctrl.signal);
    expect(getEventListeners(ctrl.signal, "abort")).toHaveLength(0);
    const pending = sleep(60_000, ctrl.signal);
    expect(getEventListeners(ctrl.signal, "abort")).toHaveLength(1);
    ctrl.abort();
    await pending;
    expect(getEventListeners(ctrl.signal, "abort")).toHaveLength(0);
    await sleep(60_000, ctrl.signal); // already aborted: at once
  });
});
