/* Compile-time proof that split_ring.hpp restates <linux/virtio_ring.h> correctly. */
#include <linux/virtio_ring.h>
#include <stddef.h>

_Static_assert(VRING_DESC_F_NEXT == 1, "NEXT");
_Static_assert(VRING_DESC_F_WRITE == 2, "WRITE");
_Static_assert(VRING_DESC_F_INDIRECT == 4, "INDIRECT");
_Static_assert(VRING_USED_F_NO_NOTIFY == 1, "NO_NOTIFY");
_Static_assert(VRING_AVAIL_F_NO_INTERRUPT == 1, "NO_INTERRUPT");
_Static_assert(sizeof(struct vring_desc) == 16, "descriptor size");
_Static_assert(offsetof(struct vring_avail, ring) == 4, "avail ring offset");
_Static_assert(sizeof(struct vring_used_elem) == 8, "used element size");
_Static_assert(offsetof(struct vring_used, ring) == 4, "used ring offset");

/* ISO C forbids an empty translation unit. */
int vsnd_ring_abi_checked(void) { return 1; }
