// The part of unzipper (the zip reader under exceljs) that src/import/leads-xlsx.ts uses:
// random access to a workbook's parts through the zip's central directory.
declare module 'unzipper' {
  export interface CentralDirectoryFile {
    path: string;
    /** 'File' or 'Directory' */
    type: string;
    buffer(): Promise<Buffer>;
    /** the part's inflated bytes; an inflate error is emitted on this stream */
    stream(): import('node:stream').Readable;
  }
  export interface CentralDirectory {
    files: CentralDirectoryFile[];
  }
  export const Open: {
    file(path: string): Promise<CentralDirectory>;
  };
}
