-- ARGV = userId: look at one user now (after a keyspace `expired` event, say).
return wake(ARGV[1], now_ms())
