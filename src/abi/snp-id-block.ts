// (placeholder: filled in by the SNP work in progress)
export {};
