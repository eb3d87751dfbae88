// Loaded before dynalite (node --require). dynalite throws from a request's
// 'error' event when its client goes away mid-request (a process killed by a
// test), and the uncaught exception ends the server for every other client.
// A DynamoDB endpoint outlives its clients: such errors are dropped; any
// other uncaught exception still ends the process.
process.on('uncaughtException', (err) => {
  if (err && (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.message === 'aborted')) {
    return
  }
  console.error(err)
  process.exit(1)
})
