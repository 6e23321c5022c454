// Guest→host hypercalls (VMMCALL, RAX = number). KVM's numbering where KVM has the call
// (Linux include/uapi/linux/kvm_para.h); sevsim's own calls start at 0x5e500.

/** KVM_HC_MAP_GPA_RANGE: RBX = GPA, RCX = pages, RDX = attributes (bit 4 = encrypted/private). */
export const HC_MAP_GPA_RANGE = 12n;
export const MAP_GPA_RANGE_ENCRYPTED = 1n << 4n;
/** The guest kernel has booted; RBX = GPA of its shared (C=0) region, RCX = its size in bytes. */
export const HC_SEVSIM_BOOTED = 0x5e500n;
/** Guest console output: RBX = GPA of the text in shared memory, RCX = length. */
export const HC_SEVSIM_PRINT = 0x5e501n;
/** Hypercall return values in RAX. */
export const HC_OK = 0n;
export const HC_EINVAL = BigInt.asUintN(64, -22n);
