import { describe, expect, it } from "vitest";
import type { Secret } from "../kube/client.ts";
import { checkOwnership } from "./ownership.ts";

const secret = (meta: Partial<Secret["metadata"]>): Secret => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "target", namespace: "ns", ...meta },
});
const managed = { "app.kubernetes.io/managed-by": "nexar-token-operator" };
const none = () => false;
const all = () => true;

describe("checkOwnership", () => {
  it("allows a missing Secret", () => {
    expect(checkOwnership(undefined, "ns/a", false, none)).toEqual({ ok: true, adopting: false });
  });

  it("allows a Secret this NexarToken manages (label + owner annotation)", () => {
    const s = secret({ labels: managed, annotations: { "nexar-operator.io/owner": "ns/a" } });
    expect(checkOwnership(s, "ns/a", false, all)).toEqual({ ok: true, adopting: false });
  });

  it("allows a Secret whose managed-by label was stripped but names this NexarToken", () => {
    const s = secret({ annotations: { "nexar-operator.io/owner": "ns/a" } });
    expect(checkOwnership(s, "ns/a", false, all)).toEqual({ ok: true, adopting: false });
  });

  it("allows a stripped Secret that still carries an ownerReference to this NexarToken's uid", () => {
    const s = secret({ ownerReferences: [{ apiVersion: "x/v1", kind: "NexarToken", name: "a", uid: "uid-a" }] });
    expect(checkOwnership(s, "ns/a", false, all, "uid-a")).toEqual({ ok: true, adopting: false });
    expect(checkOwnership(s, "ns/a", false, all, "uid-other").ok).toBe(false);
  });

  it("refuses a Secret managed by another NexarToken that exists, even with adopt", () => {
    const s = secret({ labels: managed, annotations: { "nexar-operator.io/owner": "ns/first" } });
    const d = checkOwnership(s, "ns/second", true, (k) => k === "ns/first");
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.message).toContain("NexarToken ns/first");
  });

  it("needs adopt for an unmanaged Secret, or one left behind by a deleted NexarToken", () => {
    const foreign = secret({ labels: { app: "x" } });
    expect(checkOwnership(foreign, "ns/a", false, none).ok).toBe(false);
    expect(checkOwnership(foreign, "ns/a", true, none)).toEqual({ ok: true, adopting: true });
    const leftBehind = secret({ labels: managed, annotations: { "nexar-operator.io/owner": "ns/gone" } });
    expect(checkOwnership(leftBehind, "ns/a", false, none).ok).toBe(false);
    expect(checkOwnership(leftBehind, "ns/a", true, none)).toEqual({ ok: true, adopting: true });
  });
});
