import { describe, expect, it } from "vitest";
import { SecretIndex } from "./secret-index.ts";

describe("SecretIndex", () => {
  it("maps each Secret to the NexarTokens referencing it, and follows changed references", () => {
    const ix = new SecretIndex();
    ix.set("ns/a", ["ns/creds", "ns/a"]);
    ix.set("ns/b", ["ns/creds", "ns/b"]);
    expect([...ix.referencing("ns/creds")].sort()).toEqual(["ns/a", "ns/b"]);
    expect(ix.referencing("ns/a")).toEqual(["ns/a"]);
    expect(ix.secrets).toBe(3);
    // b moves to other credentials: the old reference is gone
    ix.set("ns/b", ["ns/other", "ns/b"]);
    expect(ix.referencing("ns/creds")).toEqual(["ns/a"]);
    expect(ix.referencing("ns/other")).toEqual(["ns/b"]);
    // the same references again (a status echo) change nothing
    ix.set("ns/b", ["ns/other", "ns/b"]);
    expect(ix.referencing("ns/other")).toEqual(["ns/b"]);
    expect(ix.secrets).toBe(4);
  });

  it("drops a Secret once no NexarToken references it", () => {
    const ix = new SecretIndex();
    ix.set("ns/a", ["ns/creds", "ns/a"]);
    ix.set("ns/b", ["ns/creds", "ns/b"]);
    ix.delete("ns/a");
    expect(ix.referencing("ns/a")).toEqual([]);
    expect(ix.referencing("ns/creds")).toEqual(["ns/b"]);
    ix.delete("ns/b");
    expect(ix.referencing("ns/creds")).toEqual([]);
    expect(ix.secrets).toBe(0);
    ix.delete("ns/unknown"); // no-op
  });
});
