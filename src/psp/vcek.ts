// (placeholder)
export {};
