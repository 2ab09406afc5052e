#!/bin/sh
# Dependencies point one way: gateway -> storage -> protocol.  protocol/ is a
# pure codec: no libevent, no curl, no sockets.
cd "$1" || exit 2
bad=$(grep -rlE '#include *<(event2/|curl/|sys/socket\.h)' protocol/ 2>/dev/null)
if [ -n "$bad" ]; then
    echo "layering: protocol/ must not include libevent, curl or sockets: $bad" >&2
    exit 1
fi
echo "layering: ok"
