import { describe, expect, it } from "vitest";
import { writtenIsNewer } from "./reconciler.ts";

describe("writtenIsNewer (the status this process wrote against the informer's copy)", () => {
  const w = { uid: "u1", resourceVersion: "120" };
  it("is true only for the same uid and a higher integer resourceVersion", () => {
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "119" })).toBe(true);
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "120" })).toBe(false); // the echo arrived
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "121" })).toBe(false);
    // revisions compare as integers, not strings
    expect(writtenIsNewer({ uid: "u1", resourceVersion: "1000" }, { uid: "u1", resourceVersion: "999" })).toBe(true);
  });
  it("is false for another uid (deleted and recreated) or a resourceVersion that is not an integer", () => {
    expect(writtenIsNewer(w, { uid: "u2", resourceVersion: "1" })).toBe(false);
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: undefined })).toBe(false);
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "abc" })).toBe(false);
    expect(writtenIsNewer({ uid: "u1", resourceVersion: "x1" }, { uid: "u1", resourceVersion: "1" })).toBe(false);
  });
});
