// The part of unzipper (the zip reader under exceljs) that src/import/leads-xlsx.ts uses:
// random access to a workbook's parts through the zip's central directory.
declare module 'unzipper' {
  export interface CentralDirectoryFile {
    path: string;
    buffer(): Promise<Buffer>;
  }
  export interface CentralDirectory {
    files: CentralDirectoryFile[];
  }
  export const Open: {
    file(path: string): Promise<CentralDirectory>;
  };
}
