import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A visible or hidden test cell of an exercise. */
export interface ITest {
  grade_id: string;
  title: string;
  points: number;
  visible: boolean;
  status?: string;
  message?: string;
}

/** An exercise of a notebook, as the server reads it from the nbgrader metadata. */
export interface IExercise {
  grade_id: string;
  title: string;
  notebook: string;
  package_file: string | null;
  cell: string;
  points: number;
  tests: ITest[];
  status?: 'not started' | 'not implemented' | 'failing' | 'passed';
  message?: string;
}

export interface INotebook {
  path: string;
  points: number;
  problem: string;
  exercises: IExercise[];
}

export interface IStub {
  name: string;
  file: string;
  line: number;
}

/** The lab folder's exercises; with statuses when it comes from a check. */
export interface IListing {
  folder: string;
  notebooks: INotebook[];
  points: number;
  stubs: IStub[];
  checking?: boolean;
  checked?: boolean;
  problem?: string;
  superseded?: boolean;
}

export interface IReceipt {
  zip: string;
  created: string;
  files: { [path: string]: string };
  visible_tests: { passed: number; exercises: number; problem: string };
  superseded?: boolean;
}

/** Call the server extension's endpoint /miniflow/`endpoint`. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'miniflow', endpoint);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  const data = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data.message || text);
  }
  return data as T;
}
