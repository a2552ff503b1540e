// @tus/server + @tus/file-store, the reference tus server for bench/run.py.
// usage: node server.mjs PORT DIRECTORY   (DIRECTORY on tmpfs, e.g. /dev/shm/...)
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const port = Number(process.argv[2] || 1080);
const directory = process.argv[3] || "/dev/shm/tus-node-bench";

const server = new Server({
  path: "/files",
  datastore: new FileStore({ directory }),
});

server.listen({ host: "127.0.0.1", port }, () => {
  console.log(`@tus/server listening on http://127.0.0.1:${port}/files storing in ${directory}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
