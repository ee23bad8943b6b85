// The completion scripts' shell code, imported as text (esbuild's text loader, scripts/bundle.mjs).
declare module '*.bash' {
  const text: string;
  export default text;
}
declare module '*.zsh' {
  const text: string;
  export default text;
}
declare module '*.fish' {
  const text: string;
  export default text;
}
declare module '*.sh' {
  const text: string;
  export default text;
}
